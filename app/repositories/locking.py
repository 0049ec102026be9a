"""Rows locked for the rest of the transaction, by primary key."""

from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, inspect, select
from sqlalchemy.orm import Session

from app.database import Base

M = TypeVar("M", bound=Base)


@cache
def _locking(model: type[Base]) -> Select[Any]:
    """`model`'s row by its primary key (each column bound by its name), locked until the
    transaction ends (SELECT … FOR UPDATE) and read afresh over what the session holds.
    Built once: `Session.get` with these options builds its statement anew on every call, a
    third of the lookup's CPU (~100 µs of ~300 on PostgreSQL)."""
    key = inspect(model).primary_key
    return (
        select(model)
        .where(*(column == bindparam(column.key) for column in key))
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def locked(session: Session, model: type[M], key: dict[str, Any]) -> M | None:
    """The row of `model` whose primary key is `key` (column name → value), locked."""
    found: M | None = session.scalars(_locking(model), key).one_or_none()
    return found
