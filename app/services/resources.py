"""Resources: who may do what to them, and the events their changes announce."""

__all__ = [
    "Caller",
    "Page",
    "Reading",
    "ResourceFilter",
    "ResourceOrder",
    "ShownResource",
    "create",
    "create_many",
    "delete",
    "get",
    "get_owned",
    "page",
    "replace",
    "update",
]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.database import utcnow
from app.errors import Forbidden, NotFound
from app.events.types import Event, EventType
from app.models import Resource
from app.repositories import (
    Caller,
    Reading,
    ResourceFilter,
    ResourceOrder,
    ResourceReads,
    ResourceRepository,
    ShownResource,
)
from app.schemas import API_TIME, RESOURCE, ResourceCreate
from app.unit_of_work import UnitOfWork


def _announce(uow: UnitOfWork, event_type: EventType, shown: Sequence[dict[str, Any]]) -> None:
    """One event per resource, its data as the API shows it."""
    for data in shown:
        uow.emit(Event(event_type, data))


def _shown(resource: Resource) -> dict[str, Any]:
    shown: dict[str, Any] = RESOURCE.dump_python(RESOURCE.validate_python(resource), mode="json")
    return shown


def get(reading: Reading, resource_id: int) -> ShownResource:
    """The resource as the API shows it (read, not loaded for change)."""
    resource = ResourceReads(reading).shown(resource_id)
    if resource is None:
        raise NotFound("Resource not found")
    return resource


def get_owned(
    session: Session, resource_id: int, user: Caller, *, admin_may: bool = False
) -> Resource:
    """The resource, if `user` may change it: 404 when missing, 403 when someone else's
    (unless `admin_may` and the user is an admin).

    Locked for the rest of the request, so concurrent writes to one resource take turns: one
    that waited for a delete finds nothing (404) instead of updating a row that is gone, and
    of racing deletes exactly one deletes (and announces it).
    """
    resource = ResourceRepository(session).get_for_update(resource_id)
    if resource is None:
        raise NotFound("Resource not found")
    if resource.owner_id != user.id and not (admin_may and user.is_admin):
        raise Forbidden("Only the owner may change this resource")
    return resource


@dataclass(frozen=True)
class Page:
    resources: Sequence[ShownResource]
    more: bool  # whether resources follow this page
    total: int | None  # how many match in all, when counted


def page(
    reading: Reading,
    limit: int,
    *,
    skip: int = 0,
    after: tuple[Any, int] | None = None,
    where: ResourceFilter | None = None,
    order: ResourceOrder | None = None,
    count: bool = True,
) -> Page:
    """One page of the resources `where` picks, in `order` (id by default): past the place
    `after` (a key and an id; by key: as cheap at any depth), then `skip` more. One row more
    than asked says whether more follow; the total is counted only when asked (its cost grows
    with the table)."""
    rows, total = ResourceReads(reading).page(limit + 1, skip, after, where, order, count=count)
    return Page(rows[:limit], len(rows) > limit, total)


def create_many(
    uow: UnitOfWork, owner: Caller, items: Sequence[ResourceCreate]
) -> list[dict[str, Any]]:
    """Create all of `items` for `owner`, in order; they stand or fall together with the commit.
    Returns them as the API shows them (JSON-ready, ResourceOut's fields in its order), known
    without reading the rows back."""
    now = utcnow()
    shared = {"owner_id": owner.id, "version": 1, "created_at": now, "updated_at": now}
    rows = [
        {"name": item.name, "description": item.description, "metadata": item.metadata}
        for item in items
    ]
    ids = ResourceRepository(uow.session).insert_many(rows, shared)
    shown_shared = {**shared, "created_at": API_TIME.dump_python(now, mode="json")}
    shown_shared["updated_at"] = shown_shared["created_at"]
    created = [{"id": new_id, **row, **shown_shared} for new_id, row in zip(ids, rows, strict=True)]
    _announce(uow, "resource.created", created)
    return created


def create(uow: UnitOfWork, owner: Caller, item: ResourceCreate) -> dict[str, Any]:
    return create_many(uow, owner, [item])[0]


def update(uow: UnitOfWork, resource: Resource, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply `changes` (field name → value, as the API names them). Returns the resource as
    the API shows it (JSON-ready), as its event does."""
    for field, value in changes.items():
        setattr(resource, "metadata_" if field == "metadata" else field, value)
    uow.session.flush()  # the new version and timestamp exist from here on
    shown = _shown(resource)
    _announce(uow, "resource.updated", [shown])
    return shown


def replace(uow: UnitOfWork, resource: Resource, item: ResourceCreate) -> dict[str, Any]:
    return update(uow, resource, item.model_dump())


def delete(uow: UnitOfWork, resource: Resource) -> None:
    data = _shown(resource)
    uow.session.delete(resource)
    uow.session.flush()
    uow.emit(Event("resource.deleted", data))
