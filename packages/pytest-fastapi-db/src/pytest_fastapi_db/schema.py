"""The test schema: built once, from the models or from the migrations, and reused across runs
while its fingerprint (the DDL the models compile to, and the migrations' head) matches.

Migrations run in three steps, so that no `env.py` can wait on a lock the kit holds: the old
schema is dropped and committed; the upgrade runs in a thread of its own, with a deadline
(an async `env.py` may `asyncio.run` there), on a connection the kit hands over in
`config.attributes["connection"]` or, if `env.py` opens its own, through `sqlalchemy.url`
set to the test database; last, the kit checks the tables are there and records the
fingerprint.
"""

import hashlib
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Dialect,
    Engine,
    MetaData,
    String,
    Table,
    inspect,
    select,
    text,
)
from sqlalchemy.schema import CreateTable

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine

# Outside the app's metadata, so no test, rollback or emptying ever touches it.
FINGERPRINTS = Table("pytest_fastapi_db_schema", MetaData(), Column("fingerprint", String(64)))
SHARED_CONNECTION_RECIPE = (
    "make env.py run on config.attributes['connection'] when it is given (Alembic's "
    "'sharing a connection' recipe; see pytest-fastapi-db's README)"
)


class MigrationsFailed(RuntimeError):
    """The migrations did not build the test schema."""


def schema_fingerprint(dialect: Dialect, metadata: MetaData, migrations_head: str = "") -> str:
    """A hash of the DDL the metadata compiles to on this database, and the migrations' head."""
    ddl = "\n".join(
        str(CreateTable(table).compile(dialect=dialect)) for table in metadata.sorted_tables
    )
    return hashlib.sha256(f"{migrations_head}\n{ddl}".encode()).hexdigest()


def _is_current(connection: Connection, fingerprint: str) -> bool:
    return bool(
        inspect(connection).has_table(FINGERPRINTS.name)
        and connection.scalar(select(FINGERPRINTS.c.fingerprint)) == fingerprint
    )


def _clear(connection: Connection, metadata: MetaData) -> None:
    FINGERPRINTS.drop(connection, checkfirst=True)
    metadata.drop_all(connection)
    connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


def _record(connection: Connection, fingerprint: str) -> None:
    FINGERPRINTS.create(connection)
    connection.execute(FINGERPRINTS.insert().values(fingerprint=fingerprint))


def prepare_schema(connection: Connection, metadata: MetaData) -> bool:
    """The models' tables, unless the database already holds them; True if (re)built.
    Inside the caller's transaction (`engine.begin()`, or `run_sync`)."""
    fingerprint = schema_fingerprint(connection.dialect, metadata)
    if _is_current(connection, fingerprint):
        return False
    _clear(connection, metadata)
    metadata.create_all(connection)
    _record(connection, fingerprint)
    return True


def migrations_head(alembic_config: "Config") -> str:
    from alembic.script import ScriptDirectory

    return ",".join(sorted(ScriptDirectory.from_config(alembic_config).get_heads()))


def build_schema(
    engine: Engine, metadata: MetaData, alembic_config: "Config | None", timeout: float
) -> bool:
    """The test schema on a sync engine, from the models or the migrations; True if rebuilt."""
    if alembic_config is None:
        with engine.begin() as connection:
            return prepare_schema(connection, metadata)
    fingerprint = schema_fingerprint(engine.dialect, metadata, migrations_head(alembic_config))
    with engine.begin() as connection:
        if _is_current(connection, fingerprint):
            return False
        _clear(connection, metadata)

    def upgrade() -> None:
        with engine.begin() as connection:
            _upgrade(alembic_config, engine.url, connection)

    _with_deadline(upgrade, timeout)
    with engine.begin() as connection:
        _check_migrated(connection, metadata)
        _record(connection, fingerprint)
    return True


async def build_schema_async(
    engine: "AsyncEngine", metadata: MetaData, alembic_config: "Config | None", timeout: float
) -> bool:
    """`build_schema` on an async engine; an async env.py gets the URL, not a connection."""
    if alembic_config is None:
        async with engine.begin() as connection:
            rebuilt: bool = await connection.run_sync(prepare_schema, metadata)
            return rebuilt
    fingerprint = schema_fingerprint(engine.dialect, metadata, migrations_head(alembic_config))
    async with engine.begin() as connection:
        if await connection.run_sync(_is_current, fingerprint):
            return False
        await connection.run_sync(_clear, metadata)
    _with_deadline(lambda: _upgrade(alembic_config, engine.url, None), timeout)
    async with engine.begin() as connection:
        await connection.run_sync(_check_migrated, metadata)
        await connection.run_sync(_record, fingerprint)
    return True


def _upgrade(alembic_config: "Config", url: Any, connection: Connection | None) -> None:
    from alembic import command

    if connection is not None:
        alembic_config.attributes["connection"] = connection
    # For an env.py that opens its own connection from alembic.ini's URL: the test database.
    rendered = url.render_as_string(hide_password=False).replace("%", "%%")
    alembic_config.set_main_option("sqlalchemy.url", rendered)
    command.upgrade(alembic_config, "head")


def _with_deadline(work: Any, timeout: float) -> None:
    """`work()` in a thread (no event loop there, so an async env.py may start one), failing
    with one line if it has not finished within `timeout` seconds."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name="pytest-fastapi-db-migrations", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise MigrationsFailed(
            f"pytest-fastapi-db: the migrations did not finish within {timeout:g} s (set "
            "fastapi_db_migrations_timeout); env.py is probably waiting for a lock: "
            f"{SHARED_CONNECTION_RECIPE}"
        )
    if failures:
        raise MigrationsFailed(
            f"pytest-fastapi-db: the migrations failed: {type(failures[0]).__name__}: {failures[0]}"
        ) from failures[0]


def _check_migrated(connection: Connection, metadata: MetaData) -> None:
    missing = [t.name for t in metadata.sorted_tables if not inspect(connection).has_table(t.name)]
    if missing:
        raise MigrationsFailed(
            f"pytest-fastapi-db: after the migrations the test database lacks {', '.join(missing)}"
            f": env.py migrated another database (a connection of its own to an in-memory "
            f"SQLite?): {SHARED_CONNECTION_RECIPE}"
        )
