"""The test kit: every test in a transaction that is rolled back, on a database made for tests.

Settings are fixed *before* the app is imported, so nothing the app builds ever points at a
real database: `DATABASE_URL` is the test database (`TEST_DATABASE_URL`, default SQLite in
memory), and the kit refuses any URL that does not look like one.
"""

import json
import os
import secrets

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "sqlite://")
os.environ.update(
    ENVIRONMENT="test",
    DATABASE_URL=TEST_DATABASE_URL,
    SECRET_KEY=secrets.token_urlsafe(48),
    EXTERNAL_API_URL="http://external.test",
    EXTERNAL_API_KEY="test-api-key",
    EXTERNAL_API_TIMEOUT="2",
    PASSWORD_HASH_TIME_COST="1",
    PASSWORD_HASH_MEMORY_KIB="64",
    CORS_ORIGINS="",
)

from collections.abc import AsyncIterator, Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402
import respx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import Connection, Engine  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.auth import create_access_token, hash_password  # noqa: E402
from app.database import Base, get_db  # noqa: E402
from app.main import app as the_app  # noqa: E402
from app.models import User  # noqa: E402
from app.settings import get_settings  # noqa: E402
from tests.databases import fresh_database, test_engine  # noqa: E402

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def engine(worker_id: str) -> Iterator[Engine]:
    """One engine per test process, its schema made once from the models."""
    engine = test_engine(TEST_DATABASE_URL, worker_id)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def scratch_database_url(tmp_path: Path, worker_id: str) -> str:
    """An empty database of the suite's kind, for code that makes its own schema or engine."""
    url = make_url(TEST_DATABASE_URL)
    if url.get_backend_name() == "postgresql":
        url = fresh_database(url, f"{url.database}_scratch_{worker_id}")
        return url.render_as_string(hide_password=False)
    return f"sqlite:///{tmp_path}/scratch.db"


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside an outer transaction that the test never gets to commit."""
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        assert transaction.is_active, "the outer test transaction ended early"
        transaction.rollback()


@pytest.fixture
def db_session(connection: Connection) -> Iterator[Session]:
    """The app's `commit()` releases a SAVEPOINT; the outer transaction still rolls back."""
    session = Session(
        bind=connection,
        join_transaction_mode="create_savepoint",
        autoflush=False,
        expire_on_commit=False,
    )
    yield session
    session.close()


@pytest.fixture
def app(db_session: Session) -> Iterator[Any]:
    """The app, with `get_db` handing out the test's session (and only that key overridden)."""

    def test_db() -> Iterator[Session]:
        yield db_session

    the_app.dependency_overrides[get_db] = test_db
    yield the_app
    del the_app.dependency_overrides[get_db]
    assert not the_app.dependency_overrides, "a test left a dependency override behind"


StateSetter = Callable[[str, object], None]


@pytest.fixture
def set_app_state(app: Any) -> Iterator[StateSetter]:
    """Replace `app.state.<name>` for one test (monkeypatch's undo deletes State attributes)."""
    previous: dict[str, object] = {}

    def set_state(name: str, value: object) -> None:
        previous.setdefault(name, getattr(app.state, name))
        setattr(app.state, name, value)

    yield set_state
    for name, value in previous.items():
        setattr(app.state, name, value)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest_asyncio.fixture
async def async_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as ac:
            yield ac


UserFactory = Callable[..., User]


@pytest.fixture
def make_user(db_session: Session) -> UserFactory:
    counter = iter(range(1, 1_000_000))

    def make(
        *, username: str | None = None, password: str | None = PASSWORD, is_active: bool = True
    ) -> User:
        username = username or f"user{next(counter)}"
        user = User(
            email=f"{username}@example.com",
            username=username,
            hashed_password=hash_password(password) if password else None,
            is_active=is_active,
        )
        db_session.add(user)
        db_session.commit()
        return user

    return make


def bearer(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_access_token(data={'sub': user.email})}"}


@pytest.fixture
def user(make_user: UserFactory) -> User:
    return make_user(username="owner")


@pytest.fixture
def auth_headers(user: User) -> dict[str, str]:
    return bearer(user)


@pytest.fixture
def other_user(make_user: UserFactory) -> User:
    return make_user(username="stranger")


@pytest.fixture
def other_headers(other_user: User) -> dict[str, str]:
    return bearer(other_user)


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
