"""Alembic migrations: the only way the schema is made outside tests."""

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS_DIR = Path(__file__).parent


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str | None = None) -> None:
    command.upgrade(alembic_config(database_url), "head")


@cache
def head_revisions() -> frozenset[str]:
    """The revisions the code expects the database at."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def schema_is_current(connection: Connection) -> bool:
    """Whether the database was migrated to the code's head (not behind, not unmigrated)."""
    current = MigrationContext.configure(connection).get_current_heads()
    return frozenset(current) == head_revisions()
