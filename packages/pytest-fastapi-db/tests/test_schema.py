"""Guarantee 6: the test schema is built once, reused while its fingerprint matches, rebuilt
when the models or the migrations change."""

from pathlib import Path

import pytest
from kit_project import INI, run  # type: ignore[import-not-found]
from pytest_fastapi_db.blocker import DatabaseBlocker
from pytest_fastapi_db.schema import prepare_schema
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, inspect


def _metadata(*extra_columns: Column) -> MetaData:  # type: ignore[type-arg]
    metadata = MetaData()
    Table("things", metadata, Column("id", Integer, primary_key=True), *extra_columns)
    return metadata


def test_reused_while_the_fingerprint_matches(tmp_path: Path, db_blocker: DatabaseBlocker) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/schema.db")
    with db_blocker.unblocked():
        with engine.begin() as connection:
            assert prepare_schema(connection, _metadata()) is True
        with engine.begin() as connection:
            assert prepare_schema(connection, _metadata()) is False
        changed = _metadata(Column("name", String(10)))
        with engine.begin() as connection:
            assert prepare_schema(connection, changed) is True
            columns = {c["name"] for c in inspect(connection).get_columns("things")}
        assert columns == {"id", "name"}
    engine.dispose()


MIGRATION_ENV = """
from alembic import context

config = context.config
context.configure(connection=config.attributes["connection"], target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
"""

FIRST_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(100), unique=True),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100)),
        sa.Column("made_by_migration", sa.Integer, server_default="1"),
    )
"""

ALEMBIC_FACTORY = """
from pathlib import Path

from alembic.config import Config


def alembic_config():
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config
"""


def test_the_schema_can_come_from_the_migrations(project: pytest.Pytester) -> None:
    migrations = project.mkdir("migrations")
    (migrations / "env.py").write_text(MIGRATION_ENV)
    (migrations / "versions").mkdir()
    (migrations / "versions" / "0001_first.py").write_text(FIRST_REVISION)
    project.makepyfile(kitmigrations=ALEMBIC_FACTORY)
    project.makeini(INI + "fastapi_db_alembic = kitmigrations:alembic_config\n")
    project.makepyfile(
        test_migrated="""
        from sqlalchemy import inspect

        def test_tables_come_from_the_migrations(db_session):
            columns = {c["name"] for c in inspect(db_session.connection()).get_columns("items")}
            assert "made_by_migration" in columns
        """
    )
    run(project).assert_outcomes(passed=1)


# The stock env.py: a connection of its own, from alembic.ini's URL.
OWN_CONNECTION_ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
connectable = engine_from_config(
    config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""

SECOND_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade():
    op.add_column("items", sa.Column("colour", sa.String(20)))
"""


def migrated_project(project: pytest.Pytester, env: str, extra_ini: str = "") -> pytest.Pytester:
    migrations = project.mkdir("migrations")
    (migrations / "env.py").write_text(env)
    (migrations / "versions").mkdir()
    (migrations / "versions" / "0001_first.py").write_text(FIRST_REVISION)
    project.makepyfile(kitmigrations=ALEMBIC_FACTORY)
    project.makeini(INI + "fastapi_db_alembic = kitmigrations:alembic_config\n" + extra_ini)
    return project


def test_an_env_py_with_its_own_connection_rebuilds_without_waiting(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEST_DATABASE_URL", f"sqlite:///{tmp_path}/migrated.db")
    migrated_project(project, OWN_CONNECTION_ENV, "fastapi_db_migrations_timeout = 20\n")
    project.makepyfile(
        test_migrated="""
        from sqlalchemy import inspect

        def test_columns(db_session):
            columns = {c["name"] for c in inspect(db_session.connection()).get_columns("items")}
            print("COLUMNS", sorted(columns))
        """
    )
    run(project, "-s").stdout.fnmatch_lines(["*COLUMNS*made_by_migration*"])
    # A schema change: the second run drops the old schema and migrates again.
    (project.path / "migrations" / "versions" / "0002_colour.py").write_text(SECOND_REVISION)
    second = run(project, "-s")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*COLUMNS*colour*"])


def test_migrations_that_hang_fail_with_one_line(project: pytest.Pytester) -> None:
    stuck = "import time\ntime.sleep(30)\n" + MIGRATION_ENV
    migrated_project(project, stuck, "fastapi_db_migrations_timeout = 1\n")
    project.makepyfile(test_x="def test_x(db_session): pass")
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*migrations did not finish within 1 s*sharing a connection*"])


def test_an_env_py_that_migrates_another_database_is_named(project: pytest.Pytester) -> None:
    # In memory, a connection of env.py's own is another, empty database.
    migrated_project(project, OWN_CONNECTION_ENV)
    project.makepyfile(test_x="def test_x(db_session): pass")
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the test database lacks items, users: env.py migrated another*"])


HELPER_ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool
from pytest_fastapi_db.migrations import run_on_given_connection

config = context.config
if not run_on_given_connection(context, None):
    raise AssertionError("the kit hands its connection over")
"""


def test_the_env_py_helper_runs_on_the_kits_connection(project: pytest.Pytester) -> None:
    migrated_project(project, HELPER_ENV)  # in memory: only the kit's connection will do
    project.makepyfile(
        test_migrated="""
        from sqlalchemy import inspect

        def test_tables_come_from_the_migrations(db_session):
            columns = {c["name"] for c in inspect(db_session.connection()).get_columns("items")}
            assert "made_by_migration" in columns
        """
    )
    run(project).assert_outcomes(passed=1)
