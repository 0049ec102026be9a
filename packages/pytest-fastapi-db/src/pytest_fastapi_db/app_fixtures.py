"""Fixtures of the app: its db dependency pointed at the test's session, the test clients, the
live server, and the check that no dependency override outlives its test."""

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from pytest_fastapi_db.blocker import DatabaseBlocker
from pytest_fastapi_db.config import KitConfig, app_database_url
from pytest_fastapi_db.databases import is_sqlite
from pytest_fastapi_db.db_fixtures import Seed, SessionHolder, active, reset_tables
from pytest_fastapi_db.live_server import LiveServer, LoopClient, serving
from pytest_fastapi_db.sessions import SessionFactory, bound


@pytest.fixture
def fastapi_app(kit: KitConfig) -> Any:
    return kit.load("fastapi_app")


@pytest.fixture
def app_with_test_session(
    fastapi_app: Any,
    current_session: SessionHolder,
    kit: KitConfig,
    session_factory: SessionFactory,
) -> Iterator[Any]:
    """The app, its db dependency overridden by the test's session (that key only): an async
    generator for an async app, as FastAPI expects of its dependency. Without
    `fastapi_db_dependency` nothing is overridden: the app's own sessionmakers, bound by
    `fastapi_db_bind`, make their sessions in the test's transaction."""
    if not kit.option("fastapi_db_dependency"):
        yield fastapi_app
        return
    dependency = kit.load("fastapi_db_dependency")

    def test_session() -> Iterator[Session]:
        yield current_session.session

    async def async_test_session() -> AsyncIterator[Any]:
        yield current_session.session

    override = async_test_session if session_factory.is_async else test_session
    fastapi_app.dependency_overrides[dependency] = override
    yield fastapi_app
    fastapi_app.dependency_overrides.pop(dependency, None)


@pytest.fixture
def client(
    request: pytest.FixtureRequest,
    app_with_test_session: Any,
    kit: KitConfig,
    session_factory: SessionFactory,
) -> Iterator[Any]:
    """A test client on the app. For an async app, whose connections belong to the session's
    event loop, a client that runs each request on that loop (no WebSocket support there)."""
    base_url = kit.option("fastapi_base_url")
    if session_factory.is_async:
        loop = request.getfixturevalue("session_event_loop")
        with LoopClient(app_with_test_session, base_url, loop) as loop_client:
            yield loop_client
        return
    from fastapi.testclient import TestClient

    with TestClient(app_with_test_session, base_url=base_url) as test_client:
        yield test_client


@pytest.fixture
def live_server(
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    fastapi_app: Any,
    db_blocker: DatabaseBlocker,
    kit: KitConfig,
    session_factory: SessionFactory,
    db_seed: Seed,
) -> Iterator[LiveServer]:
    """The app on a real port. Its requests commit for real (each gets a session of its own on
    the test database, as in production), and the tables are emptied afterwards. An async
    app's sessions come from an engine without a pool, so they open on the server's own loop."""
    dependency = kit.load_optional("fastapi_db_dependency")
    if session_factory.is_async:
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        url = app_database_url(pytestconfig)
        if is_sqlite(url) and url.database in (None, "", ":memory:"):
            # One database lives on one connection: the kit's, usable from any loop.
            engine: Any = request.getfixturevalue("async_db_engine")
        else:
            engine = create_async_engine(url, poolclass=NullPool)
        # Asked for now: a fixture may not be requested during teardown.
        reset = resetting_on_session_loop(request, kit, session_factory, db_seed)

        async def request_session() -> AsyncIterator[Any]:
            async with session_factory(engine) as session:
                yield session

        override: Any = request_session
    else:
        engine = request.getfixturevalue("db_engine")
        reset = lambda: reset_tables(engine, kit, session_factory, db_seed)  # noqa: E731

        def sync_request_session() -> Iterator[Session]:
            with session_factory(engine) as session:
                yield session

        override = sync_request_session
    if dependency is not None:
        fastapi_app.dependency_overrides[dependency] = override
    try:
        with (
            db_blocker.unblocked(),
            bound(kit.load_all("fastapi_db_bind"), engine, joined=False),
            serving(fastapi_app) as server,
        ):
            yield server
    finally:
        fastapi_app.dependency_overrides.pop(dependency, None)
        with db_blocker.unblocked():
            reset()


def resetting_on_session_loop(
    request: pytest.FixtureRequest, kit: KitConfig, factory: SessionFactory, seed: Seed
) -> Callable[[], None]:
    """Emptying and seeding an async app's tables, on the loop its engine lives on."""
    from pytest_fastapi_db.async_fixtures import reset_async

    loop = request.getfixturevalue("session_event_loop")
    engine = request.getfixturevalue("async_db_engine")
    return lambda: loop.run_until_complete(reset_async(engine, kit, factory, seed))


@pytest.fixture(autouse=True)
def _no_surviving_overrides(pytestconfig: pytest.Config) -> Iterator[None]:
    """Fail a test that leaves a dependency override behind (never imports the app itself)."""
    app_path = pytestconfig.getini("fastapi_app")
    module_name = app_path.partition(":")[0]
    if not (active(pytestconfig) and module_name in sys.modules):
        yield
        return
    app = KitConfig(pytestconfig).load("fastapi_app")
    before = set(app.dependency_overrides)
    yield
    left = set(app.dependency_overrides) - before
    if left:
        names = ", ".join(sorted(getattr(dep, "__name__", repr(dep)) for dep in left))
        for dependency in left:
            del app.dependency_overrides[dependency]
        pytest.fail(f"pytest-fastapi-db: the test left dependency override(s) behind: {names}")


__all__ = [
    "_no_surviving_overrides",
    "app_with_test_session",
    "client",
    "fastapi_app",
    "live_server",
]
