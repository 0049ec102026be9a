"""The pytest plugin: hooks, markers and fixtures.

Inert until `fastapi_db_metadata` is set in the ini file, so that installing it never changes
a suite that does not use it.
"""

import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from pytest_fastapi_db.blocker import HOW_TO_ASK, DatabaseBlocker
from pytest_fastapi_db.commits import CommitLog, capturing
from pytest_fastapi_db.config import DEFAULT_TEST_DATABASE_URL, KitConfig, add_ini_options
from pytest_fastapi_db.databases import (
    NotATestDatabase,
    assert_test_database,
    build_async_test_engine,
    build_test_engine,
    empty_tables,
    prepare_schema,
    worker_url,
)
from pytest_fastapi_db.identity import TokenFactory
from pytest_fastapi_db.live_server import LiveServer, serving
from pytest_fastapi_db.network import only_allowed_hosts
from pytest_fastapi_db.queries import QueryLog, assert_queries

BLOCKER = pytest.StashKey[DatabaseBlocker]()
MARKER = "db"
# Collection order: rollback tests, then transactional ones, then tests without a database.
ROLLBACK, TRANSACTIONAL, NO_DATABASE = range(3)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_ini_options(parser)


def _active(config: pytest.Config) -> bool:
    return bool(config.getini("fastapi_db_metadata"))


def _worker_id(config: pytest.Config) -> str:
    """pytest-xdist's worker name (gw0, gw1, …), or "master" without it."""
    worker_id: str = getattr(config, "workerinput", {}).get("workerid", "master")
    return worker_id


def _test_database_url(config: pytest.Config) -> str:
    return os.environ.get(config.getini("fastapi_db_url_env")) or DEFAULT_TEST_DATABASE_URL


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Point the app at the test database before any conftest can import it."""
    if not _active(early_config):
        return
    url = _test_database_url(early_config)
    try:
        assert_test_database(url)
    except NotATestDatabase as exc:
        raise pytest.UsageError(str(exc)) from None
    os.environ[early_config.getini("fastapi_db_app_url_env")] = url


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(transaction=False): the test uses the database; transaction=True commits for "
        "real and empties the tables afterwards",
    )
    if _active(config):
        blocker = DatabaseBlocker()
        blocker.install()
        config.stash[BLOCKER] = blocker


def pytest_unconfigure(config: pytest.Config) -> None:
    if BLOCKER in config.stash:
        config.stash[BLOCKER].uninstall()


def _group(item: pytest.Item) -> int:
    marker = item.get_closest_marker(MARKER)
    fixtures = set(getattr(item, "fixturenames", ()))
    if (marker is not None and marker.kwargs.get("transaction")) or "live_server" in fixtures:
        return TRANSACTIONAL
    if marker is not None or fixtures & {"db_session", "async_db_session"}:
        return ROLLBACK
    return NO_DATABASE


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A stable sort by group, after any shuffling: random order within each group."""
    if _active(config):
        items.sort(key=_group)


# -- the database ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kit(pytestconfig: pytest.Config) -> KitConfig:
    if not _active(pytestconfig):
        raise pytest.UsageError("pytest-fastapi-db: set the ini option `fastapi_db_metadata`")
    return KitConfig(pytestconfig)


@pytest.fixture(scope="session")
def db_blocker(pytestconfig: pytest.Config) -> DatabaseBlocker:
    """`with db_blocker.unblocked():` lets code outside the fixtures reach a database."""
    if BLOCKER not in pytestconfig.stash:
        raise pytest.UsageError("pytest-fastapi-db: set the ini option `fastapi_db_metadata`")
    return pytestconfig.stash[BLOCKER]


@pytest.fixture(scope="session")
def db_engine(
    request: pytest.FixtureRequest, kit: KitConfig, db_blocker: DatabaseBlocker
) -> Iterator[Engine]:
    """One engine per test process, its tables made once from the metadata."""
    worker_id = _worker_id(request.config)
    with db_blocker.unblocked():
        engine = build_test_engine(
            worker_url(make_url(_test_database_url(request.config)), worker_id)
        )
        db_blocker.kit_pools.add(id(engine.pool))
        with engine.begin() as connection:
            prepare_schema(connection, kit.metadata, kit.alembic_config())
    yield engine
    engine.dispose()


class SessionHolder:
    """The session the app's db dependency hands out now (a savepoint may swap it)."""

    session: Session


@pytest.fixture
def current_session(db_session: Session) -> SessionHolder:
    holder = SessionHolder()
    holder.session = db_session
    return holder


@pytest.fixture
def savepoint(
    db_session: Session, current_session: SessionHolder
) -> Callable[[], AbstractContextManager[Session]]:
    """`with savepoint() as session:` runs one example (Hypothesis, schemathesis) in a SAVEPOINT
    of its own, rolled back at the end; the app's session is that example's meanwhile."""

    @contextmanager
    def example() -> Iterator[Session]:
        connection = db_session.connection()
        nested = connection.begin_nested()
        session = Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        current_session.session = session
        try:
            yield session
        finally:
            current_session.session = db_session
            session.close()
            if nested.is_active:
                nested.rollback()

    return example


@pytest.fixture
def db_session(
    request: pytest.FixtureRequest, db_engine: Engine, db_blocker: DatabaseBlocker, kit: KitConfig
) -> Iterator[Session]:
    """The test's session. By default inside a transaction that is rolled back at the end (the
    app's `commit()` releases a SAVEPOINT); with `@pytest.mark.db(transaction=True)`, real
    commits and emptied tables afterwards."""
    marker = request.node.get_closest_marker(MARKER)
    transactional = marker is not None and marker.kwargs.get("transaction")
    if transactional or "live_server" in request.fixturenames:
        yield from _transactional_session(db_engine, db_blocker, kit)
    else:
        yield from _rollback_session(db_engine, db_blocker)


def _rollback_session(engine: Engine, blocker: DatabaseBlocker) -> Iterator[Session]:
    with blocker.unblocked(), engine.connect() as connection:
        outer = connection.begin()
        session = Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        blocker.start_watching()
        try:
            yield session
        finally:
            blocker.stop_watching()
            session.close()
        intact = outer.is_active
        if intact:
            outer.rollback()
    _check_teardown(intact, blocker)


def _check_teardown(intact: bool, blocker: DatabaseBlocker) -> None:
    if not intact:
        pytest.fail(
            "pytest-fastapi-db: the test's outer transaction ended before teardown (something "
            "committed or rolled back the connection itself), so its changes may have leaked"
        )
    if blocker.foreign_checkouts:
        pytest.fail(
            "pytest-fastapi-db: code bypassed the test session and checked out its own "
            f"connection(s) from {', '.join(sorted(set(blocker.foreign_checkouts)))}; "
            "use the session the app's db dependency yields"
        )


def _transactional_session(
    engine: Engine, blocker: DatabaseBlocker, kit: KitConfig
) -> Iterator[Session]:
    with blocker.unblocked():
        session = Session(bind=engine, expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()
            empty_tables(engine, kit.metadata)


@pytest.fixture(autouse=True)
def _network_access(pytestconfig: pytest.Config) -> Iterator[None]:
    """Sockets only to loopback, the test database's host and `fastapi_allowed_hosts`."""
    if not _active(pytestconfig):
        yield
        return
    hosts = set(pytestconfig.getini("fastapi_allowed_hosts").split())
    database_host = make_url(_test_database_url(pytestconfig)).host
    if database_host:
        hosts.add(database_host)
    with only_allowed_hosts(frozenset(hosts)):
        yield


@pytest.fixture(autouse=True)
def _database_access(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Iterator[None]:
    """Give marked tests their database; fail tests that reached one without asking."""
    if not _active(pytestconfig):
        yield
        return
    if request.node.get_closest_marker(MARKER) is not None:
        request.getfixturevalue("db_session")
    blocker = pytestconfig.stash[BLOCKER]
    blocker.blocked_attempts.clear()
    yield
    if blocker.blocked_attempts:
        pytest.fail(f"pytest-fastapi-db: the test tried to use the database: {HOW_TO_ASK}")


@pytest.fixture
def capture_after_commit(
    current_session: SessionHolder,
) -> Callable[[], AbstractContextManager[CommitLog]]:
    """`with capture_after_commit() as commits:` records what each commit in the block wrote."""
    return lambda: capturing(current_session.session)


# -- query counting -------------------------------------------------------------------------

QueryAssertion = Callable[[int], AbstractContextManager[QueryLog]]


@pytest.fixture
def assert_num_queries(db_engine: Engine) -> QueryAssertion:
    """`with assert_num_queries(2): …` fails, listing the SQL, unless exactly 2 ran."""
    return lambda expected: assert_queries(db_engine, expected, exact=True)


@pytest.fixture
def assert_max_num_queries(db_engine: Engine) -> QueryAssertion:
    return lambda expected: assert_queries(db_engine, expected, exact=False)


# -- the app --------------------------------------------------------------------------------


@pytest.fixture
def fastapi_app(kit: KitConfig) -> Any:
    return kit.load("fastapi_app")


@pytest.fixture
def app_with_test_session(
    fastapi_app: Any, current_session: SessionHolder, kit: KitConfig
) -> Iterator[Any]:
    """The app, its db dependency overridden by the test's session (that key only)."""
    dependency = kit.load("fastapi_db_dependency")

    def test_session() -> Iterator[Session]:
        yield current_session.session

    fastapi_app.dependency_overrides[dependency] = test_session
    yield fastapi_app
    fastapi_app.dependency_overrides.pop(dependency, None)


@pytest.fixture
def client(app_with_test_session: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app_with_test_session) as test_client:
        yield test_client


if all(importlib.util.find_spec(name) for name in ("pytest_asyncio", "greenlet")):
    # Async fixtures need the `async` extra; everything else works without it.
    import pytest_asyncio
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    @pytest_asyncio.fixture(scope="session", loop_scope="session")
    async def async_db_engine(
        request: pytest.FixtureRequest, kit: KitConfig, db_blocker: DatabaseBlocker
    ) -> AsyncIterator[AsyncEngine]:
        """The async engine, on the session's event loop like every async fixture and test."""
        worker_id = _worker_id(request.config)
        url = make_url(_test_database_url(request.config))
        with db_blocker.unblocked():
            engine = build_async_test_engine(worker_url(url, worker_id))
            db_blocker.kit_pools.add(id(engine.sync_engine.pool))
            async with engine.begin() as connection:
                await connection.run_sync(prepare_schema, kit.metadata, kit.alembic_config())
        yield engine
        await engine.dispose()

    @pytest_asyncio.fixture(loop_scope="session")
    async def async_db_session(
        async_db_engine: AsyncEngine, db_blocker: DatabaseBlocker
    ) -> AsyncIterator[AsyncSession]:
        """`db_session` for async code: an AsyncSession in a transaction rolled back at the end."""
        with db_blocker.unblocked():
            async with async_db_engine.connect() as connection:
                outer = await connection.begin()
                session = AsyncSession(
                    bind=connection,
                    join_transaction_mode="create_savepoint",
                    expire_on_commit=False,
                )
                db_blocker.start_watching()
                try:
                    yield session
                finally:
                    db_blocker.stop_watching()
                    await session.close()
                intact = outer.is_active
                if intact:
                    await outer.rollback()
        _check_teardown(intact, db_blocker)

    @pytest_asyncio.fixture
    async def async_client(app_with_test_session: Any) -> AsyncIterator[Any]:
        """An httpx client on the app (its lifespan run), for `async def` tests."""
        import httpx

        app = app_with_test_session
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as ac:
                yield ac


@pytest.fixture
def live_server(
    fastapi_app: Any, db_engine: Engine, db_blocker: DatabaseBlocker, kit: KitConfig
) -> Iterator[LiveServer]:
    """The app on a real port. Its requests commit for real (each gets a session of its own on
    the test database, as in production), and the tables are emptied afterwards."""
    dependency = kit.load("fastapi_db_dependency")

    def request_session() -> Iterator[Session]:
        with Session(bind=db_engine, expire_on_commit=False) as session:
            yield session

    fastapi_app.dependency_overrides[dependency] = request_session
    try:
        with db_blocker.unblocked(), serving(fastapi_app) as server:
            yield server
    finally:
        fastapi_app.dependency_overrides.pop(dependency, None)
        with db_blocker.unblocked():
            empty_tables(db_engine, kit.metadata)


@pytest.fixture(autouse=True)
def _no_surviving_overrides(pytestconfig: pytest.Config) -> Iterator[None]:
    """Fail a test that leaves a dependency override behind (never imports the app itself)."""
    app_path = pytestconfig.getini("fastapi_app")
    module_name = app_path.partition(":")[0]
    if not (_active(pytestconfig) and module_name in sys.modules):
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


# -- identities -----------------------------------------------------------------------------


@pytest.fixture
def make_user(db_session: Session, kit: KitConfig) -> Callable[..., Any]:
    """`make_user(**fields)`: a committed user, made by the app's own factory."""
    factory = kit.load("fastapi_user_factory")

    def make(**fields: Any) -> Any:
        user = factory(db_session, **fields)
        db_session.commit()
        return user

    return make


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user()


@pytest.fixture
def other_user(make_user: Callable[..., Any]) -> Any:
    return make_user()


@pytest.fixture
def tokens(kit: KitConfig) -> TokenFactory:
    """Valid, expired, tampered and `alg: none` tokens, minted by the app's token function."""
    return TokenFactory(kit.load("fastapi_token_factory"), kit.option("fastapi_token_subject"))


@pytest.fixture
def auth_headers(user: Any, tokens: TokenFactory) -> dict[str, str]:
    return tokens.headers(user)
