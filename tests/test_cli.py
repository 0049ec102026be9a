"""The `resource-api` command, run as a user would: in its own process, on a temp database."""

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pytest_fastapi_db.blocker import DatabaseBlocker
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from app.cli import _problems
from app.database import build_engine
from app.migrations import alembic_config
from tests.conftest import PASSWORD
from tests.servers import free_port, register_and_log_in, run_cli, running_server, server_env


@pytest.fixture
def cli_env(tmp_path: Path, scratch_database_url: str) -> dict[str, str]:
    return server_env(tmp_path, scratch_database_url)


def test_migrate_makes_the_schema_the_models_describe(
    cli_env: dict[str, str], db_blocker: DatabaseBlocker
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.database import Base

    result = run_cli(cli_env, "migrate")

    assert result.returncode == 0, result.stderr
    engine = build_engine(cli_env["DATABASE_URL"])
    with db_blocker.unblocked(), engine.connect() as connection:
        assert {"users", "resources"} <= set(inspect(connection).get_table_names())
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []
    # Running it again is harmless.
    assert run_cli(cli_env, "migrate").returncode == 0


def test_migrate_never_prints_the_database_password(cli_env: dict[str, str]) -> None:
    url = make_url(cli_env["DATABASE_URL"])
    if url.get_backend_name() != "postgresql":
        pytest.skip("only a server URL has a password (the PostgreSQL run checks this)")
    password = "never-print-me"  # the server trusts loopback, so any password connects
    with_password = url.set(password=password).render_as_string(hide_password=False)
    result = run_cli({**cli_env, "DATABASE_URL": with_password}, "migrate")
    assert result.returncode == 0, result.stderr
    assert "***@" in result.stdout
    assert password not in result.stdout + result.stderr


def test_migrations_go_down_to_nothing(
    cli_env: dict[str, str], db_blocker: DatabaseBlocker
) -> None:
    from alembic import command

    assert run_cli(cli_env, "migrate").returncode == 0
    engine = build_engine(cli_env["DATABASE_URL"])
    with db_blocker.unblocked(), engine.connect() as connection:
        command.downgrade(alembic_config(cli_env["DATABASE_URL"]), "base")
        assert set(inspect(connection).get_table_names()) == {"alembic_version"}
    engine.dispose()


def test_the_code_expects_the_newest_migration() -> None:
    from alembic.script import ScriptDirectory

    from app.migrations import HEAD_REVISIONS

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert frozenset(heads) == HEAD_REVISIONS, "a new migration: update HEAD_REVISIONS"


def test_a_serving_process_does_not_load_alembic(cli_env: dict[str, str]) -> None:
    """The schema check at start and in /ready reads alembic's table with one query."""
    assert run_cli(cli_env, "migrate").returncode == 0
    probe = (
        "import sys; from app.cli import _schema_problem; import app.main;"
        " assert _schema_problem() is None;"
        " print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env, capture_output=True, text=True, check=False
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_create_user_reads_the_password_from_stdin(cli_env: dict[str, str]) -> None:
    assert run_cli(cli_env, "migrate").returncode == 0
    args = ("create-user", "--email", "cli@example.com", "--username", "cli")

    created = run_cli(cli_env, *args, stdin=PASSWORD + "\n")
    again = run_cli(cli_env, *args, stdin=PASSWORD + "\n")
    weak = run_cli(cli_env, "create-user", "--email", "w@example.com", "--username", "w", stdin="x")

    assert created.returncode == 0, created.stderr
    assert "created user 1 (cli)" in created.stdout
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert weak.returncode == 2
    assert "password" in weak.stderr


def test_create_user_makes_an_admin_on_request(cli_env: dict[str, str]) -> None:
    assert run_cli(cli_env, "migrate").returncode == 0
    args = ("create-user", "--email", "boss@example.com", "--username", "boss", "--admin")

    created = run_cli(cli_env, *args, stdin=PASSWORD + "\n")

    assert created.returncode == 0, created.stderr
    assert "created admin 1 (boss)" in created.stdout
    with running_server(cli_env) as server:
        token = httpx.post(
            f"{server.url}/api/v1/auth/token", data={"username": "boss", "password": PASSWORD}
        ).json()["access_token"]
        me = httpx.get(
            f"{server.url}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.json()["is_admin"] is True


@pytest.fixture
def server(cli_env: dict[str, str]) -> Iterator[str]:
    assert run_cli(cli_env, "migrate").returncode == 0
    with running_server(cli_env) as server:
        yield server.url


def test_serve_runs_the_api_and_keeps_its_key(server: str, cli_env: dict[str, str]) -> None:
    """The README's tour, over a real socket: register, log in, create, list."""
    api = f"{server}/api/v1"
    headers = register_and_log_in(server, "tour")

    created = httpx.post(f"{api}/resources", json={"name": "Over the wire"}, headers=headers)

    assert created.status_code == 201
    assert [r["name"] for r in httpx.get(f"{api}/resources").json()] == ["Over the wire"]
    assert httpx.get(f"{server}/ready").json()["database"] == "ok"
    # No SECRET_KEY given: one was made and kept, so tokens survive a restart.
    assert (Path(cli_env["DATA_DIR"]) / "secret_key").stat().st_size >= 32


def test_a_bad_token_is_refused_with_403_over_a_real_socket(server: str) -> None:
    """A WebSocket closed before accept reaches a real client as HTTP 403."""
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
        "Authorization": "Bearer nope",
    }
    response = httpx.get(f"{server}/ws/updates", headers=handshake)
    assert response.status_code == 403


def test_serve_refuses_a_database_that_was_never_migrated(cli_env: dict[str, str]) -> None:
    result = run_cli(cli_env, "serve", "--port", str(free_port()))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("resource-api: the database schema at ")
    assert line.endswith("is behind: run resource-api migrate")


def test_serve_names_a_database_it_cannot_reach_without_its_password(
    cli_env: dict[str, str],
) -> None:
    unreachable = "postgresql+psycopg://app:secret@127.0.0.1:1/test_nowhere"
    result = run_cli({**cli_env, "DATABASE_URL": unreachable}, "serve", "--port", str(free_port()))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "resource-api: cannot reach the database at postgresql+psycopg://app:***@"
    )
    assert "secret" not in result.stderr


def test_several_workers_without_a_broker_are_refused(cli_env: dict[str, str]) -> None:
    assert run_cli(cli_env, "migrate").returncode == 0
    result = run_cli({**cli_env, "BROKER_URL": ""}, "serve", "--workers", "2")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("resource-api: --workers 2 needs BROKER_URL")


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("short", "SECRET_KEY must be set to at least 32 bytes"),
        ("changeme" * 5, "SECRET_KEY looks like a placeholder"),
    ],
)
def test_a_bad_production_key_is_one_line_that_never_shows_it(
    cli_env: dict[str, str], key: str, says: str
) -> None:
    env = {**cli_env, "ENVIRONMENT": "production", "SECRET_KEY": key}
    result = run_cli(env, "serve", "--port", str(free_port()))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"resource-api: {says}")
    assert "token_urlsafe" in line  # and how to make a good one
    assert key not in result.stderr + result.stdout
    debug = run_cli(env, "--debug", "serve", "--port", str(free_port()))
    assert "Traceback" in debug.stderr  # --debug shows where


def test_a_database_that_does_not_exist_is_one_line(cli_env: dict[str, str]) -> None:
    nowhere = "postgresql+psycopg://app:secret@127.0.0.1:1/test_nowhere"
    result = run_cli({**cli_env, "DATABASE_URL": nowhere}, "migrate")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "resource-api: cannot reach the database at postgresql+psycopg://app:***@"
    )
    assert "secret" not in result.stderr


def test_a_missing_driver_names_the_extra_to_install() -> None:
    problems = _problems(ModuleNotFoundError("No module named 'psycopg'", name="psycopg"))
    assert problems == ["psycopg is not installed: pip install 'resource-api[postgres]'"]
    assert _problems(ModuleNotFoundError("No module named 'x'", name="x")) is None  # a bug


@pytest.mark.parametrize(
    ("option", "value"), [("--log-level", "bogus"), ("--workers", "0"), ("--port", "x")]
)
def test_bad_options_are_usage_errors_not_tracebacks(
    cli_env: dict[str, str], option: str, value: str
) -> None:
    result = run_cli(cli_env, "serve", option, value)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"argument {option}" in result.stderr


def test_serve_help_explains_every_option_and_its_default(cli_env: dict[str, str]) -> None:
    result = run_cli(cli_env, "serve", "--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--workers", "--log-level"):
        assert option in result.stdout
    assert "(default: 127.0.0.1)" in result.stdout
    assert "(default: info)" in result.stdout
