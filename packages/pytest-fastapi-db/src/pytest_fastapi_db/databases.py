"""Test databases: their names (one per project and xdist worker), made when missing, engines
with working SAVEPOINTs on SQLite, the schema, and emptying tables after transactional tests."""

import asyncio
import hashlib
import re
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from pytest_fastapi_db.guard import (
    MAINTENANCE_DATABASES,
    NotATestDatabase,
    assert_test_database,
    maintenance,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def project_url(url: URL, rootdir: Path, worker_id: str) -> URL:
    """The database this project's tests use, this worker's own under pytest-xdist.

    Named after the given one, the project and the worker (`test_myapp_3f2a1b_gw0`), so that
    two projects on one server, or two workers, never share a database; SQLite files get the
    worker's suffix, SQLite in memory is each process's own already.
    """
    worker = "" if worker_id == "master" else f"_{worker_id}"
    database = url.database or ""
    if is_sqlite(url):
        if database in ("", ":memory:") or not worker:
            return url
        path = Path(database)
        return url.set(database=str(path.with_name(f"{path.stem}{worker}{path.suffix}")))
    tag = hashlib.sha256(str(rootdir.resolve()).encode()).hexdigest()[:6]
    project = re.sub(r"[^a-z0-9]+", "_", rootdir.name.lower()).strip("_")[:20] or "project"
    return url.set(database=f"{database[:24]}_{project}_{tag}{worker}")


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _engine_options(url: URL) -> dict[str, Any]:
    if not is_sqlite(url):
        return {}
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if url.database in (None, "", ":memory:"):
        options["poolclass"] = StaticPool  # one in-memory database, shared across threads
    return options


def build_test_engine(url: URL) -> Engine:
    """An engine for tests; on SQLite with the SAVEPOINT fix."""
    engine = create_engine(url, **_engine_options(url))
    if is_sqlite(url):
        install_sqlite_savepoint_fix(engine)
    return engine


# For a URL of a sync driver, the async driver to use; an async driver (asyncpg, aiosqlite,
# psycopg, which is both) is kept as it is.
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
ASYNC_DBAPIS = {"asyncpg", "aiosqlite", "psycopg", "aiomysql", "asyncmy", "aioodbc"}


def is_async_url(url: URL) -> bool:
    return url.get_driver_name() in ASYNC_DBAPIS - {"psycopg"}


def async_url(url: URL) -> URL:
    if url.get_driver_name() in ASYNC_DBAPIS:
        return url
    return url.set(drivername=ASYNC_DRIVERS.get(url.get_backend_name(), url.drivername))


def build_async_test_engine(url: URL) -> "AsyncEngine":
    """The async twin of `build_test_engine`, on the URL's own async driver (asyncpg stays
    asyncpg), or the async mode of its sync one (aiosqlite, psycopg)."""
    from sqlalchemy.ext.asyncio import create_async_engine  # needs greenlet: the async extra

    engine = create_async_engine(async_url(url), **_engine_options(url))
    if is_sqlite(url):
        install_sqlite_savepoint_fix(engine.sync_engine)
    return engine


def install_sqlite_savepoint_fix(engine: Engine) -> None:
    """SQLAlchemy's documented recipe: the driver must not manage transactions itself.

    With the sqlite3 driver's default mode, BEGIN is deferred and SAVEPOINTs commit what came
    before them, so a test's final rollback silently leaves committed rows behind.
    """

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _explicit_begin(connection: Any) -> None:
        # In memory, every session shares one DBAPI connection (StaticPool): a second session
        # of a committing test joins the transaction already open instead of failing.
        if not getattr(connection.connection.dbapi_connection, "in_transaction", False):
            connection.exec_driver_sql("BEGIN")


CANNOT_ADMINISTER = (
    "pytest-fastapi-db cannot reach a maintenance database ({names}) on {url} to create the "
    "test database: create it yourself, or grant the user CONNECT and CREATEDB"
)


def on_postgres_admin(url: URL, work: Callable[[Connection], None]) -> None:
    """`work` on a connection to the server's maintenance database (CREATE/DROP DATABASE work
    before the test database exists; the guard lets this one through). A URL of an async
    driver (asyncpg) is served by that driver, in a thread of its own: no sync driver needed."""
    if is_async_url(url):
        _in_a_thread(_on_async_admin(url, work))
        return
    with maintenance():
        for database in MAINTENANCE_DATABASES:
            admin = create_engine(url.set(database=database), isolation_level="AUTOCOMMIT")
            try:
                connection = admin.connect()
            except OperationalError:
                admin.dispose()
                continue  # that one is missing or closed to us: try the next
            try:
                with connection:
                    work(connection)
            finally:
                admin.dispose()
            return
    raise NotATestDatabase(_cannot_administer(url))


async def _on_async_admin(url: URL, work: Callable[[Connection], None]) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    with maintenance():
        for database in MAINTENANCE_DATABASES:
            admin = create_async_engine(url.set(database=database), isolation_level="AUTOCOMMIT")
            try:
                connection = await admin.connect()
            except (OperationalError, OSError):
                await admin.dispose()
                continue
            try:
                await connection.run_sync(work)
            finally:
                await connection.close()
                await admin.dispose()
            return
    raise NotATestDatabase(_cannot_administer(url))


def _cannot_administer(url: URL) -> str:
    names = ", ".join(MAINTENANCE_DATABASES)
    return CANNOT_ADMINISTER.format(names=names, url=url.render_as_string(hide_password=True))


def _in_a_thread(work: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to the end on a loop of its own, whatever loop this thread runs."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(work)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name="pytest-fastapi-db-admin")
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


def fresh_postgres_database(url: URL, name: str) -> URL:
    """Drop and make the database `name` beside `url`'s; returns its URL."""
    fresh = url.set(database=name)
    assert_test_database(fresh)

    def recreate(admin: Connection) -> None:
        admin.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.execute(text(f'CREATE DATABASE "{name}"'))

    on_postgres_admin(url, recreate)
    return fresh


def ensure_database(url: URL) -> URL:
    """Make the database `url` names if it is missing (kept, with its schema, if not).

    PostgreSQL only: SQLite makes its files itself; elsewhere the database must exist.
    """
    if url.get_backend_name() != "postgresql":
        return url
    assert_test_database(url)

    def create_if_missing(admin: Connection) -> None:
        exists = admin.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
        ).first()
        if not exists:
            admin.execute(text(f'CREATE DATABASE "{url.database}"'))

    on_postgres_admin(url, create_if_missing)
    return url


def empty_tables(engine: Engine, metadata: MetaData) -> None:
    """After a transactional test: every table empty, identities restarted."""
    with engine.begin() as connection:
        empty_tables_on(connection, metadata)


def empty_tables_on(connection: Connection, metadata: MetaData) -> None:
    """`empty_tables` inside a transaction the caller holds (async engines: `run_sync`)."""
    tables = [table.name for table in reversed(metadata.sorted_tables)]
    if not tables:
        return
    if connection.dialect.name == "postgresql":
        names = ", ".join(f'"{name}"' for name in tables)
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return
    for name in tables:
        connection.execute(text(f'DELETE FROM "{name}"'))  # noqa: S608  (our table names)
    if connection.dialect.name == "sqlite":
        has_sequences = connection.execute(
            text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
        ).first()
        if has_sequences:
            connection.execute(text("DELETE FROM sqlite_sequence"))
