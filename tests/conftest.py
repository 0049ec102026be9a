"""The app's side of the test kit. pytest-fastapi-db (packages/) does the database work: it
points DATABASE_URL at the test database (TEST_DATABASE_URL, default SQLite in memory) before
this file runs, refuses anything that is not a test database, and gives every test a
rolled-back transaction (`db_session`, `client`, `async_client`, `user`, `tokens`, …).

Here: the rest of the settings, fixed before the app is imported, and fixtures of our own.
"""

import json
import os
import secrets

os.environ.update(
    ENVIRONMENT="test",
    SECRET_KEY=secrets.token_urlsafe(48),
    EXTERNAL_API_URL="http://external.test",
    EXTERNAL_API_KEY="test-api-key",
    EXTERNAL_API_TIMEOUT="2",
    PASSWORD_HASH_TIME_COST="1",
    PASSWORD_HASH_MEMORY_KIB="64",
    CORS_ORIGINS="",
    BROKER_URL="",
)

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
from pytest_fastapi_db.blocker import DatabaseBlocker
from pytest_fastapi_db.databases import fresh_postgres_database
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from app.database import build_engine
from app.models import User
from app.settings import get_settings
from tests.factories import PASSWORD
from tests.servers import register_and_log_in, run_cli, running_server, server_env

__all__ = ["PASSWORD"]

UserFactory = Callable[..., User]


@pytest.fixture
def user(make_user: UserFactory) -> User:
    return make_user(username="owner")


@pytest.fixture
def other_user(make_user: UserFactory) -> User:
    return make_user(username="stranger")


@pytest.fixture
def other_headers(other_user: User, tokens: Any) -> dict[str, str]:
    headers: dict[str, str] = tokens.headers(other_user)
    return headers


@pytest.fixture
def scratch_database_url(tmp_path: Path, worker_id: str, db_blocker: DatabaseBlocker) -> str:
    """An empty database of the suite's kind, for code that makes its own schema or engine."""
    url = make_url(get_settings().database_url)
    if url.get_backend_name() == "postgresql":
        with db_blocker.unblocked():
            url = fresh_postgres_database(url, f"{url.database}_scratch_{worker_id}")
        return url.render_as_string(hide_password=False)
    return f"sqlite:///{tmp_path}/scratch.db"


def scratch_engine(url: str, blocker: DatabaseBlocker, backend: str, why: str) -> Iterator[Engine]:
    """The app's kind of engine on the scratch database, for a test only `backend` can run."""
    if not url.startswith(backend):
        pytest.skip(why)
    engine = build_engine(url)
    with blocker.unblocked():
        yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(scratch_database_url: str, db_blocker: DatabaseBlocker) -> Iterator[Engine]:
    why = "PostgreSQL's own behaviour (the suite's PostgreSQL run checks this)"
    yield from scratch_engine(scratch_database_url, db_blocker, "postgresql", why)


@pytest.fixture
def live_writer(tmp_path: Path, scratch_database_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A live server on the suite's kind of database, without a write limit, and a signed-up
    user's bearer headers on it: for writes that race over real sockets."""
    env = server_env(tmp_path, scratch_database_url, RATE_LIMIT_WRITES_PER_USER="")
    assert run_cli(env, "migrate").returncode == 0
    with running_server(env) as server:
        yield server.url, register_and_log_in(server.url, "writer")


StateSetter = Callable[[str, object], None]


@pytest.fixture
def set_app_state(fastapi_app: Any) -> Iterator[StateSetter]:
    """Replace `app.state.<name>` for one test (monkeypatch's undo deletes State attributes)."""
    previous: dict[str, object] = {}

    def set_state(name: str, value: object) -> None:
        previous.setdefault(name, getattr(fastapi_app.state, name))
        setattr(fastapi_app.state, name, value)

    yield set_state
    for name, value in previous.items():
        setattr(fastapi_app.state, name, value)


@pytest.fixture
def external_api() -> Iterator[respx.MockRouter]:
    """The external service, mocked at the HTTP layer; any unmocked request fails the test."""
    with respx.mock(
        base_url=get_settings().external_api_url, assert_all_called=False, assert_all_mocked=True
    ) as router:
        yield router


def raw_json(body: object) -> dict[str, Any]:
    """Request kwargs for JSON a strict client would refuse to send (lone surrogates, NaN)."""
    return {"content": json.dumps(body), "headers": {"Content-Type": "application/json"}}


def service_url(variable: str, what: str) -> str:
    """A real service's URL from the environment: skipped when unset, but failed under CI."""
    url = os.environ.get(variable, "")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{variable} is not set: CI must run the tests that need {what}")
        pytest.skip(f"set {variable} (for example redis://127.0.0.1:6379/0) to test with {what}")
    return url


@pytest.fixture
def redis_url() -> str:
    return service_url("TEST_REDIS_URL", "Redis")
