"""Resources: read as the API shows them, paged by key, inserted the driver's fastest way."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    tuple_,
)
from sqlalchemy.orm import Session

from app.driver_queries import DriverQuery, Reading
from app.models import Resource, id_can_exist
from app.repositories.locking import locked

RESOURCES: Table = Resource.__table__  # type: ignore[assignment]


class ShownResource(NamedTuple):
    """A resource as the API shows it, read as a plain row: no ORM object, identity map or
    instance state to build (half a read's time in its thread). `metadata` carries the
    model's attribute name, so that ResourceOut reads these rows and the ORM's objects alike."""

    id: int
    name: str
    description: str | None
    metadata_: dict[str, Any]
    owner_id: int
    version: int
    created_at: datetime
    updated_at: datetime


# Its columns, in its fields' order; the reads run on the driver (app.driver_queries).
SHOWN_COLUMNS = (
    RESOURCES.c.id,
    RESOURCES.c.name,
    RESOURCES.c.description,
    RESOURCES.c.metadata.label("metadata_"),
    RESOURCES.c.owner_id,
    RESOURCES.c.version,
    RESOURCES.c.created_at,
    RESOURCES.c.updated_at,
)
SHOWN_BY_ID = DriverQuery(select(*SHOWN_COLUMNS).where(RESOURCES.c.id == bindparam("id")))


T = TypeVar("T")

# A row to insert: column name → value.
Row = dict[str, Any]


class ResourceReads:
    """The reads the API serves, on a session or a connection of their own (`Reading`)."""

    def __init__(self, reading: Reading) -> None:
        self.reading = reading

    def shown(self, resource_id: int) -> ShownResource | None:
        if not id_can_exist(resource_id):
            return None
        row = SHOWN_BY_ID.first(self.reading, {"id": resource_id})
        return None if row is None else ShownResource._make(row)

    def page(
        self,
        limit: int,
        skip: int = 0,
        after: tuple[Any, int] | None = None,
        where: "ResourceFilter | None" = None,
        order: "ResourceOrder | None" = None,
        *,
        count: bool = False,
    ) -> tuple[Sequence[ShownResource], int | None]:
        """`limit` resources in `order` (by a key, then id), past the place `after` (the last
        shown: its key and id, found in the key's index: as cheap a million rows deep as on
        the first page) and then `skip` more (which the database walks past one by one); and,
        with `count`, how many `where` picks in all, in the same round trip: the count rides
        on every row (the database computes it once). A page past the end has no row to
        carry it, and is counted apart."""
        where, order = where or ResourceFilter(), order or ResourceOrder()
        query = _page_query(where.shape, order, after is not None, count)
        values = {**where.values(), "skip": skip, "limit": limit}
        if after is not None:
            values["after_key"], values["after_id"] = after
        rows = query.all(self.reading, values)
        if not count:
            return [ShownResource._make(row) for row in rows], None
        if rows:  # the total rides on every row, as a last column the answer leaves out
            return [ShownResource._make(row[:-1]) for row in rows], rows[0][-1]
        return [], self.count(where) if skip or after is not None else 0

    def count(self, where: "ResourceFilter | None" = None) -> int:
        where = where or ResourceFilter()
        return self.reading.scalar(_count_query(where.shape), where.values()) or 0


class ResourceRepository:
    """The writes, in a session's unit of work."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def insert_many(self, rows: Sequence[Row], shared: Row) -> list[int]:
        """New resources, inserted the fastest way the database has: one on the driver (a
        prebuilt INSERT … RETURNING); many by COPY on PostgreSQL (psycopg) from COPY_PAYS_FROM
        rows, one executemany on SQLite, batches of INSERT … RETURNING otherwise. Each has
        the columns of its row and of `shared` (the same for all), every column but the id.
        Their ids, in the order given."""
        connection = self.session.connection()
        dialect = connection.dialect
        if len(rows) == 1 and dialect.insert_returning:
            new = NEW_RESOURCE.first(connection, {**shared, **rows[0]})
            assert new is not None, "RETURNING answers a row for the row inserted"
            return [new[0]]
        copies = dialect.name == "postgresql" and dialect.driver == "psycopg"
        if copies and len(rows) >= COPY_PAYS_FROM:
            return _copy_into_postgres(connection, _driver_rows(connection, rows, shared))
        if dialect.name == "sqlite":
            return _executemany_into_sqlite(connection, _driver_rows(connection, rows, shared))
        return self.insert_many_returning(rows, shared)

    def insert_many_returning(self, rows: Sequence[Row], shared: Row) -> list[int]:
        """`insert_many` on any database SQLAlchemy speaks to."""
        returning = insert(RESOURCES).returning(RESOURCES.c.id, sort_by_parameter_order=True)
        return list(self.session.scalars(returning, [{**shared, **row} for row in rows]))

    def get_for_update(self, resource_id: int) -> Resource | None:
        """The row, locked until the transaction ends (SELECT … FOR UPDATE; SQLite's writers
        are serialised anyway), and read afresh: a concurrent delete is seen as missing."""
        if not id_can_exist(resource_id):
            return None
        return locked(self.session, Resource, {"id": resource_id})

    def owned_by(self, owner_id: int) -> Sequence[Resource]:
        query = select(Resource).where(Resource.owner_id == owner_id).order_by(Resource.id)
        return self.session.scalars(query).all()


# What a list may be ordered by; each has an index (key, id).
ORDER_KEYS = {key: RESOURCES.c[key] for key in ("id", "name", "created_at")}


@dataclass(frozen=True)
class ResourceOrder:
    key: str = "id"
    descending: bool = False


@dataclass(frozen=True)
class ResourceFilter:
    """Which resources a list shows: those of an owner (every one named: filters narrow
    together, so two different owners pick none) whose name contains a text."""

    owner_ids: tuple[int, ...] = ()
    name_contains: str | None = None

    @property
    def shape(self) -> "FilterShape":
        return len(self.owner_ids), self.name_contains is not None

    def values(self) -> dict[str, Any]:
        """The filter's values, for the parameters of its shape's statement."""
        values: dict[str, Any] = {f"owner_{n}": owner for n, owner in enumerate(self.owner_ids)}
        if self.name_contains is not None:  # a wildcard is a character like any other
            escaped = self.name_contains.replace(LIKE_ESCAPE, 2 * LIKE_ESCAPE)
            for wildcard in "%_":
                escaped = escaped.replace(wildcard, LIKE_ESCAPE + wildcard)
            values["name_contains"] = escaped
        return values


# How many owners a filter names, and whether it searches names.
FilterShape = tuple[int, bool]
LIKE_ESCAPE = "/"


def _filtered(query: Select[T], shape: FilterShape) -> Select[T]:
    owners, by_name = shape
    for n in range(owners):
        query = query.where(RESOURCES.c.owner_id == bindparam(f"owner_{n}"))
    if by_name:
        contains = RESOURCES.c.name.icontains(bindparam("name_contains"), escape=LIKE_ESCAPE)
        query = query.where(contains)
    return query


# Statements are built once per shape, values bound at each execution: building one and its
# cache key took a quarter of a list's time in its thread. Keyed by what a client chooses:
# owners named (the API names two at most), a name search, a sort, a cursor, a count.
@lru_cache(maxsize=256)
def _count_query(shape: FilterShape) -> Select[int]:
    return _filtered(select(func.count()).select_from(RESOURCES), shape)


@lru_cache(maxsize=256)
def _page_query(
    shape: FilterShape, order: "ResourceOrder", after: bool, count: bool
) -> DriverQuery:
    key = ORDER_KEYS[order.key]
    by_id = order.key == "id"  # ids are unique: no tie to break, one column
    columns = (RESOURCES.c.id,) if by_id else (key, RESOURCES.c.id)
    ends = [column.desc() if order.descending else column for column in columns]
    query: Select[Any] = _filtered(select(*SHOWN_COLUMNS), shape).order_by(*ends)
    if after:
        after_id = bindparam("after_id", type_=RESOURCES.c.id.type)
        place: Any = RESOURCES.c.id if by_id else tuple_(*columns)
        mark: Any = after_id if by_id else tuple_(bindparam("after_key", type_=key.type), after_id)
        query = query.where(place < mark if order.descending else place > mark)
    # BIGINT: a skip may be as large as 2**63 - 1 (a page past the end, not an error).
    query = query.offset(bindparam("skip", type_=BigInteger))
    query = query.limit(bindparam("limit", type_=BigInteger))
    if count:
        query = query.add_columns(_count_query(shape).scalar_subquery().label("total"))
    return DriverQuery(query)


NEW_RESOURCE_COLUMNS = (
    "name", "description", "metadata", "owner_id", "version", "created_at", "updated_at"
)  # fmt: skip
# One new resource, its id returned: on the driver, 86 µs of CPU on PostgreSQL where
# SQLAlchemy's insert of many rows, serving one, took 205 (in process).
NEW_RESOURCE = DriverQuery(
    insert(RESOURCES)
    .values({name: bindparam(name) for name in NEW_RESOURCE_COLUMNS})
    .returning(RESOURCES.c.id)
)
_COLUMN_LIST = ", ".join(NEW_RESOURCE_COLUMNS)
_PLACEHOLDERS = ", ".join("?" for _ in NEW_RESOURCE_COLUMNS)
INSERT_INTO_SQLITE = f"INSERT INTO resources ({_COLUMN_LIST}) VALUES ({_PLACEHOLDERS})"  # noqa: S608
COPY_INTO_POSTGRES = f"COPY resources (id, {_COLUMN_LIST}) FROM STDIN"
# COPY takes a round trip for the ids and one to start: for fewer rows one INSERT … RETURNING
# costs less (one row: 1,215 -> 825 µs of CPU; even at ten).
COPY_PAYS_FROM = 10
NEXT_POSTGRES_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('resources', 'id')) FROM generate_series(1, :count)"
)


def _driver_rows(connection: Connection, rows: Sequence[Row], shared: Row) -> list[tuple[Any, ...]]:
    """The rows as the driver takes them, in NEW_RESOURCE_COLUMNS' order: each value through
    its column type (JSON to text, timestamps checked and formatted) as SQLAlchemy would,
    the shared ones once."""
    dialect = connection.dialect
    processors = {
        name: RESOURCES.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in NEW_RESOURCE_COLUMNS
    }

    def bound(values: Row) -> Row:
        return {
            name: value if processors[name] is None else processors[name](value)  # type: ignore[misc]
            for name, value in values.items()
        }

    bound_shared = bound(shared)

    def driver_row(row: Row) -> tuple[Any, ...]:
        values = bound_shared | bound(row)
        return tuple(values[name] for name in NEW_RESOURCE_COLUMNS)

    return [driver_row(row) for row in rows]


def _executemany_into_sqlite(connection: Connection, rows: list[tuple[Any, ...]]) -> list[int]:
    # The first row takes the write lock, so no other writer comes between these rows: SQLite
    # gives each new row the largest id so far plus one, and the last id says them all.
    connection.exec_driver_sql(INSERT_INTO_SQLITE, rows)
    last: int = connection.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
    return list(range(last - len(rows) + 1, last + 1))


def _copy_into_postgres(connection: Connection, rows: list[tuple[Any, ...]]) -> list[int]:
    """Ids taken from the table's sequence first (atomic, whoever else inserts), then the rows
    in one COPY, in the request's transaction."""
    ids = sorted(connection.execute(NEXT_POSTGRES_IDS, {"count": len(rows)}).scalars())
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(COPY_INTO_POSTGRES) as copy:
        for new_id, row in zip(ids, rows, strict=True):
            copy.write_row((new_id, *row))
    return ids
