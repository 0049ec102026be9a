from alembic import context
from sqlalchemy import Connection

from app.database import Base, build_engine
from app.models import Resource, User  # noqa: F401  (registers the tables)
from app.settings import get_settings

config = context.config
url = config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # A caller may hand over its own connection (the test kit does: an in-memory database
    # exists only on the connection that made it).
    given = config.attributes.get("connection")
    if given is not None:
        run_on(given)
        return
    engine = build_engine(url)
    with engine.connect() as connection:
        run_on(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
