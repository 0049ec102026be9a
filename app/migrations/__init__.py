"""Alembic migrations: the only way the schema is made outside tests.

Alembic itself is loaded only to migrate: a serving process checks the schema's revision with
one query of alembic's own table, and would otherwise hold alembic (and Mako) in memory for
nothing (about 10 MiB per process).
"""

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, String, column, inspect, select, table

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent
# The revisions the code expects the database at: the newest migration's. A test checks this
# against alembic's own reading of versions/, so a new migration cannot forget it.
HEAD_REVISIONS = frozenset({"0008"})
VERSION_TABLE = "alembic_version"


def alembic_config(database_url: str | None = None) -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str | None = None) -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), "head")


def schema_is_current(connection: Connection) -> bool:
    """Whether the database was migrated to the code's head (not behind, not unmigrated)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return False
    versions = select(column("version_num", String)).select_from(table(VERSION_TABLE))
    return frozenset(connection.scalars(versions)) == HEAD_REVISIONS
