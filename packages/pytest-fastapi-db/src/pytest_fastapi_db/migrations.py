"""For your Alembic `env.py`: run on the connection a caller hands over, when it does.

    from pytest_fastapi_db.migrations import run_on_given_connection

    def run_migrations_online():
        if run_on_given_connection(context, target_metadata):
            return
        ...  # your usual engine_from_config(...) path

The test kit hands its connection over in `config.attributes["connection"]` (so that an
in-memory database, which exists only on that connection, gets the schema); without one, this
does nothing and returns False.
"""

from typing import Any


def run_on_given_connection(context: Any, target_metadata: Any, **options: Any) -> bool:
    """Migrate on `context.config.attributes["connection"]` if given; True if it was."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        return False
    context.configure(connection=connection, target_metadata=target_metadata, **options)
    with context.begin_transaction():
        context.run_migrations()
    return True
