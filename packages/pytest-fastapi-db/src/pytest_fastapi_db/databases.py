"""Test databases: the guard against real ones, engines with working SAVEPOINTs on SQLite,
one PostgreSQL database per xdist worker, and emptying tables after transactional tests."""

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Dialect,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateTable

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine


class NotATestDatabase(RuntimeError):
    """The URL does not look like a database made for tests."""


def assert_test_database(url: URL | str) -> None:
    """Refuse anything but SQLite in memory or under the temp dir, or a database named *test*."""
    url = make_url(url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite":
        if database in ("", ":memory:"):
            return
        if Path(database).resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()):
            return
    elif "test" in database.lower():
        return
    raise NotATestDatabase(
        f"pytest-fastapi-db refuses to run tests against "
        f"{url.render_as_string(hide_password=True)}: use SQLite in memory or under the temp "
        "dir, or a database whose name contains 'test'"
    )


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


ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}


def build_async_test_engine(url: URL) -> "AsyncEngine":
    """The async twin of `build_test_engine` (aiosqlite, or psycopg's async mode)."""
    from sqlalchemy.ext.asyncio import create_async_engine  # needs greenlet: the async extra

    async_url = url.set(drivername=ASYNC_DRIVERS.get(url.get_backend_name(), url.drivername))
    engine = create_async_engine(async_url, **_engine_options(url))
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
        connection.exec_driver_sql("BEGIN")


def fresh_postgres_database(url: URL, name: str) -> URL:
    """Drop and make the database `name` beside `url`'s; returns its URL."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return url.set(database=name)


def ensure_postgres_database(url: URL, name: str) -> URL:
    """The database `name` beside `url`'s, made if missing (kept, with its schema, if not)."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return url.set(database=name)


def worker_url(url: URL, worker_id: str) -> URL:
    """Under pytest-xdist, PostgreSQL workers each get `<name>_<worker>`; SQLite in memory is
    per process already."""
    if worker_id == "master" or url.get_backend_name() != "postgresql":
        return url
    return ensure_postgres_database(url, f"{url.database}_{worker_id}")


# Outside the app's metadata, so no test, rollback or emptying ever touches it.
FINGERPRINTS = Table("pytest_fastapi_db_schema", MetaData(), Column("fingerprint", String(64)))


def schema_fingerprint(dialect: Dialect, metadata: MetaData, migrations_head: str = "") -> str:
    """A hash of the DDL the metadata compiles to on this database, and the migrations' head."""
    ddl = "\n".join(
        str(CreateTable(table).compile(dialect=dialect)) for table in metadata.sorted_tables
    )
    return hashlib.sha256(f"{migrations_head}\n{ddl}".encode()).hexdigest()


def prepare_schema(
    connection: Connection, metadata: MetaData, alembic_config: "Config | None" = None
) -> bool:
    """Make the tables, unless the database already holds this exact schema; True if rebuilt.

    With an Alembic config the schema is built by the migrations (upgrade to head, on this
    connection: `env.py` must use `config.attributes["connection"]` when given), otherwise
    from the metadata. Call it inside a transaction (`engine.begin()`, or `run_sync`).
    """
    head = _migrations_head(alembic_config) if alembic_config else ""
    fingerprint = schema_fingerprint(connection.dialect, metadata, head)
    if inspect(connection).has_table(FINGERPRINTS.name):
        if connection.scalar(select(FINGERPRINTS.c.fingerprint)) == fingerprint:
            return False
        FINGERPRINTS.drop(connection)
    metadata.drop_all(connection)
    if alembic_config is None:
        metadata.create_all(connection)
    else:
        _upgrade_to_head(connection, alembic_config)
    FINGERPRINTS.create(connection)
    connection.execute(FINGERPRINTS.insert().values(fingerprint=fingerprint))
    return True


def _migrations_head(alembic_config: "Config") -> str:
    from alembic.script import ScriptDirectory

    return ",".join(sorted(ScriptDirectory.from_config(alembic_config).get_heads()))


def _upgrade_to_head(connection: Connection, alembic_config: "Config") -> None:
    from alembic import command

    connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    alembic_config.attributes["connection"] = connection
    command.upgrade(alembic_config, "head")


def empty_tables(engine: Engine, metadata: MetaData) -> None:
    """After a transactional test: every table empty, identities restarted."""
    tables = [table.name for table in reversed(metadata.sorted_tables)]
    if not tables:
        return
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{name}"' for name in tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            return
        for name in tables:
            connection.execute(text(f'DELETE FROM "{name}"'))  # noqa: S608  (our table names)
        if engine.dialect.name == "sqlite":
            has_sequences = connection.execute(
                text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
            ).first()
            if has_sequences:
                connection.execute(text("DELETE FROM sqlite_sequence"))
