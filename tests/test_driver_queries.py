"""Selects run on the driver (app.driver_queries) give what SQLAlchemy gives, are seen by
statement counters, and fail as SQLAlchemy fails, on the suite's database."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, column, insert, select, table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.database import Base, build_engine
from app.driver_queries import DriverQuery, Reading
from app.models import Resource, User
from app.repositories import (
    SHOWN_BY_ID,
    SHOWN_COLUMNS,
    ResourceFilter,
    ResourceOrder,
    ShownResource,
)
from app.repositories.resources import NEW_RESOURCE, _page_query

AWKWARD = {"quote": 'it\'s "x"', "tab\there": ["\\", None, 1.5, True], "emoji": "🙂", "n": 2**53}


@pytest.fixture(params=["session", "connection"])
def reading(request: pytest.FixtureRequest, db_session: Session) -> Reading:
    """What a read runs on: the test's session, or (as a read without a test's session in
    place does) a bare connection, here the session's own."""
    return db_session if request.param == "session" else db_session.connection()


@pytest.fixture
def resources(db_session: Session, user: User) -> list[Resource]:
    made = [
        Resource(name="Ünïcode ☃", description=None, metadata_=AWKWARD, owner_id=user.id),
        Resource(name="plain", description="two\nlines", metadata_={}, owner_id=user.id),
        Resource(name="PLAIN too", description="", metadata_={"a": {"b": []}}, owner_id=user.id),
    ]
    db_session.add_all(made)
    db_session.flush()
    return made


def test_the_shown_fields_are_the_selected_columns() -> None:
    assert ShownResource._fields == tuple(column.key for column in SHOWN_COLUMNS)
    shown_keys = tuple(column.key for column in SHOWN_BY_ID.statement.selected_columns)
    assert shown_keys == ShownResource._fields


def test_a_row_is_what_sqlalchemy_reads(
    db_session: Session, reading: Reading, resources: list[Resource]
) -> None:
    for resource in resources:
        by_driver = SHOWN_BY_ID.first(reading, {"id": resource.id})
        by_sqlalchemy = db_session.execute(SHOWN_BY_ID.statement, {"id": resource.id}).one()
        assert by_driver == tuple(by_sqlalchemy)
        shown = ShownResource._make(by_driver)  # values typed as the columns say
        assert shown.metadata_ == resource.metadata_
        assert shown.created_at.tzinfo is not None
        assert shown.created_at.astimezone(UTC) == resource.created_at
    assert SHOWN_BY_ID.first(reading, {"id": max(r.id for r in resources) + 1}) is None


@pytest.mark.parametrize("count", [False, True])
@pytest.mark.parametrize("key", ["id", "name", "created_at"])
def test_a_page_is_what_sqlalchemy_reads(
    db_session: Session,
    reading: Reading,
    resources: list[Resource],
    user: User,
    key: str,
    count: bool,
) -> None:
    """Every kind of bound value: owners, a name search, the place after a key (a time, a
    text, an id), a skip and a limit; the total riding on the rows."""
    where = ResourceFilter(owner_ids=(user.id,), name_contains="plain")
    query = _page_query(where.shape, ResourceOrder(key, descending=True), True, count)
    after_key: Any = {"id": 10**9, "name": "zzz", "created_at": datetime(2999, 1, 1, tzinfo=UTC)}
    values = {**where.values(), "skip": 0, "limit": 10, "after_key": after_key[key]}
    values["after_id"] = 10**9
    by_driver = query.all(reading, values)
    by_sqlalchemy = [tuple(row) for row in db_session.execute(query.statement, values)]
    assert by_driver == by_sqlalchemy
    assert sorted(row[1] for row in by_driver) == ["PLAIN too", "plain"]  # in the same order


def test_statement_counters_see_it(
    reading: Reading, resources: list[Resource], assert_num_queries: Any
) -> None:
    with assert_num_queries(1) as log:
        SHOWN_BY_ID.first(reading, {"id": resources[0].id})
    assert "FROM resources" in log.statements[0]


@pytest.fixture
def own_engine(scratch_database_url: str, db_blocker: Any) -> Iterator[Engine]:
    engine = build_engine(scratch_database_url)
    with db_blocker.unblocked():
        Base.metadata.create_all(engine)
        yield engine
    engine.dispose()


def test_a_failing_statement_raises_sqlalchemys_error(own_engine: Engine) -> None:
    missing = DriverQuery(select(table("no_such_table", column("x"))))
    with Session(own_engine) as session, pytest.raises(DBAPIError) as failed:
        missing.all(session, {})
    assert isinstance(failed.value.orig, own_engine.dialect.loaded_dbapi.Error)
    assert not failed.value.connection_invalidated


def test_a_lost_connection_is_invalidated_and_the_next_read_works(own_engine: Engine) -> None:
    with Session(own_engine) as session:
        connection = session.connection()
        connection.connection.dbapi_connection.close()  # type: ignore[union-attr]
        with pytest.raises(DBAPIError) as failed:
            SHOWN_BY_ID.first(session, {"id": 1})
        assert failed.value.connection_invalidated
        assert connection.invalidated
    with Session(own_engine) as session:  # the pool never hands the dead one out again
        assert SHOWN_BY_ID.first(session, {"id": 1}) is None


@pytest.mark.parametrize("description", [None, "two\nlines"])
def test_an_inserted_row_is_what_sqlalchemy_would_write(
    db_session: Session, user: User, description: str | None
) -> None:
    """Every value through its column type as SQLAlchemy binds it: JSON (awkward text, and
    a null inside), a timestamp with its zone, a NULL."""
    now = datetime(2026, 12, 4, 12, 30, 1, 123456, tzinfo=UTC)
    values = {
        "name": "Ünïcode ☃",
        "description": description,
        "metadata": AWKWARD,
        "owner_id": user.id,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    new = NEW_RESOURCE.first(db_session, values)
    assert new is not None
    stored = db_session.get(Resource, new[0])
    assert stored is not None
    assert (stored.name, stored.description, stored.metadata_) == (
        "Ünïcode ☃",
        description,
        AWKWARD,
    )
    assert (stored.owner_id, stored.version) == (user.id, 1)
    assert stored.created_at == stored.updated_at == now


def test_an_insert_leaving_a_value_to_a_default_is_refused(db_session: Session) -> None:
    """Only SQLAlchemy's execution computes Python-side defaults: the driver would store none."""
    only_a_name = insert(Resource.__table__).values(name=bindparam("name")).returning(column("id"))
    with pytest.raises(ValueError, match="no defaults"):
        DriverQuery(only_a_name).first(db_session, {"name": "x"})
