"""Fixtures of the database: the engine and its schema, seed data, the test's session (rolled
back, or really committing), savepoints, the blocker, query counts and commit capture."""

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, MetaData
from sqlalchemy.orm import Session

from pytest_fastapi_db.blocker import HOW_TO_ASK, DatabaseBlocker
from pytest_fastapi_db.commits import CommitLog, capturing
from pytest_fastapi_db.config import KitConfig, test_database_url
from pytest_fastapi_db.databases import build_test_engine, empty_tables_on, ensure_database
from pytest_fastapi_db.guard import NotATestDatabase
from pytest_fastapi_db.network import only_allowed_hosts
from pytest_fastapi_db.queries import QueryLog, assert_queries
from pytest_fastapi_db.schema import MigrationsFailed, build_schema
from pytest_fastapi_db.sessions import SessionFactory, bound

BLOCKER = pytest.StashKey[DatabaseBlocker]()
CALL_PASSED = pytest.StashKey[bool]()  # the test's call phase passed (set by the plugin)
MARKER = "db"
Seed = Callable[[Session], None] | None


def active(config: pytest.Config) -> bool:
    return bool(config.getini("fastapi_db_metadata"))


def wants_commits(request: pytest.FixtureRequest) -> bool:
    """`@pytest.mark.db(transaction=True)`, or the live server: real commits."""
    marker = request.node.get_closest_marker(MARKER)
    return bool(marker and marker.kwargs.get("transaction")) or (
        "live_server" in request.fixturenames
    )


@pytest.fixture(scope="session")
def kit(pytestconfig: pytest.Config) -> KitConfig:
    if not active(pytestconfig):
        raise pytest.UsageError("pytest-fastapi-db: set the ini option `fastapi_db_metadata`")
    return KitConfig(pytestconfig)


@pytest.fixture(scope="session")
def db_blocker(pytestconfig: pytest.Config) -> DatabaseBlocker:
    """`with db_blocker.unblocked():` lets code outside the fixtures reach a database."""
    if BLOCKER not in pytestconfig.stash:
        raise pytest.UsageError("pytest-fastapi-db: set the ini option `fastapi_db_metadata`")
    return pytestconfig.stash[BLOCKER]


@pytest.fixture(scope="session")
def db_seed() -> Seed:
    """Override to add rows every test sees: `def db_seed(): return lambda session: …`
    (session-scoped). They are committed once per database, and again after a transactional
    test has emptied the tables."""
    return None


@pytest.fixture(scope="session")
def session_factory(kit: KitConfig) -> SessionFactory:
    """The test's sessions, of the app's kind (`fastapi_db_session_factory`)."""
    return SessionFactory(
        kit.load_optional("fastapi_db_session_factory"),
        dependency=kit.load_optional("fastapi_db_dependency"),
    )


def reset_tables_on(
    connection: Connection, metadata: MetaData, factory: SessionFactory, seed: Seed
) -> None:
    """Every table empty, then the seed rows added (by a session of the app's kind), in the
    caller's transaction."""
    empty_tables_on(connection, metadata)
    if seed is not None:
        with factory.sync_session(connection) as session:
            seed(session)
            session.commit()


def reset_tables(engine: Engine, kit: KitConfig, factory: SessionFactory, seed: Seed) -> None:
    with engine.begin() as connection:
        reset_tables_on(connection, kit.metadata, factory, seed)


@pytest.fixture(scope="session")
def db_engine(
    pytestconfig: pytest.Config,
    kit: KitConfig,
    db_blocker: DatabaseBlocker,
    session_factory: SessionFactory,
    db_seed: Seed,
) -> Iterator[Engine]:
    """One engine per test process on its own database (made if missing), the schema built
    once and reused while it matches, the tables emptied and seeded once per run."""
    with db_blocker.unblocked(), one_line_failures():
        engine = build_test_engine(ensure_database(test_database_url(pytestconfig)))
        db_blocker.kit_pools.add(id(engine.pool))
        build_schema(engine, kit.metadata, kit.alembic_config(), kit.migrations_timeout)
        reset_tables(engine, kit, session_factory, db_seed)
    yield engine
    engine.dispose()


@contextmanager
def one_line_failures() -> Iterator[None]:
    """The kit's own refusals fail the run with their message alone, not a traceback."""
    try:
        yield
    except (MigrationsFailed, NotATestDatabase) as exc:
        pytest.fail(str(exc), pytrace=False)


class SessionHolder:
    """The session the app's db dependency hands out now (a savepoint may swap it)."""

    session: Session


def session_fixture_name(session_factory: SessionFactory) -> str:
    return "async_db_session" if session_factory.is_async else "db_session"


@pytest.fixture
def current_session(
    request: pytest.FixtureRequest, session_factory: SessionFactory
) -> SessionHolder:
    """The test's session, sync or async as the app is."""
    holder = SessionHolder()
    holder.session = request.getfixturevalue(session_fixture_name(session_factory))
    return holder


@pytest.fixture
def db_session(
    request: pytest.FixtureRequest,
    db_engine: Engine,
    db_blocker: DatabaseBlocker,
    kit: KitConfig,
    session_factory: SessionFactory,
    db_seed: Seed,
) -> Iterator[Session]:
    """The test's session, of the app's kind. By default inside a transaction rolled back at the
    end (the app's `commit()` releases a SAVEPOINT); with `@pytest.mark.db(transaction=True)`,
    real commits and the tables emptied (and seeded again) afterwards."""
    makers = kit.load_all("fastapi_db_bind")
    if wants_commits(request):
        with db_blocker.unblocked(), bound(makers, db_engine, joined=False):
            session = session_factory(db_engine)
            try:
                yield session
            finally:
                session.close()
                reset_tables(db_engine, kit, session_factory, db_seed)
        return
    with db_blocker.unblocked(), db_engine.connect() as connection:
        outer = connection.begin()
        session = session_factory(connection, joined=True)
        db_blocker.start_watching()
        try:
            with bound(makers, connection, joined=True):
                yield session
        finally:
            db_blocker.stop_watching()
            session.close()
        intact = outer.is_active
        if intact:
            outer.rollback()
    check_teardown(intact, db_blocker)


def check_teardown(intact: bool, blocker: DatabaseBlocker) -> None:
    if not intact:
        pytest.fail(
            "pytest-fastapi-db: the test's outer transaction ended before teardown (something "
            "committed or rolled back the connection itself), so its changes may have leaked"
        )
    if blocker.foreign_checkouts:
        pytest.fail(
            "pytest-fastapi-db: code bypassed the test session and checked out its own "
            f"connection(s) from {', '.join(sorted(set(blocker.foreign_checkouts)))}; "
            "use the session the app's db dependency yields, or name the app's sessionmaker "
            "in `fastapi_db_bind`"
        )


@pytest.fixture
def savepoint(current_session: SessionHolder, session_factory: SessionFactory) -> Any:
    """`with savepoint() as session:` runs one example (Hypothesis, schemathesis) in a SAVEPOINT
    of its own, rolled back at the end; the app's session is that example's meanwhile. For an
    async app: `async with savepoint() as session:`."""
    test_session: Any = current_session.session  # a Session, or an AsyncSession

    @contextmanager
    def example() -> Iterator[Session]:
        connection = test_session.connection()
        nested = connection.begin_nested()
        session = session_factory(connection, joined=True)
        current_session.session = session
        try:
            yield session
        finally:
            current_session.session = test_session
            session.close()
            if nested.is_active:
                nested.rollback()

    @asynccontextmanager
    async def async_example() -> AsyncIterator[Any]:
        connection = await test_session.connection()
        nested = await connection.begin_nested()
        session = session_factory(connection, joined=True)
        current_session.session = session
        try:
            yield session
        finally:
            current_session.session = test_session
            await session.close()
            if nested.is_active:
                await nested.rollback()

    return async_example if session_factory.is_async else example


@pytest.fixture(autouse=True)
def _network_access(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Iterator[None]:
    """Sockets only to loopback, the test database's host and `fastapi_allowed_hosts`; a
    refusal that the test's code swallowed (a library retrying, or logging it) fails it too."""
    if not active(pytestconfig):
        yield
        return
    hosts = set(pytestconfig.getini("fastapi_allowed_hosts").split())
    database_host = test_database_url(pytestconfig).host
    if database_host:
        hosts.add(database_host)
    with only_allowed_hosts(frozenset(hosts)) as refused:
        yield
    if refused and request.node.stash.get(CALL_PASSED, False):
        pytest.fail(
            f"pytest-fastapi-db: the test connected to {', '.join(refused)}, was refused, and "
            "something caught the refusal: mock external services at the HTTP layer (respx), "
            "or add the host to `fastapi_allowed_hosts`"
        )


@pytest.fixture(autouse=True)
def _database_access(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Iterator[None]:
    """Give marked tests their database; fail tests that reached one without asking."""
    if not active(pytestconfig):
        yield
        return
    if request.node.get_closest_marker(MARKER) is not None:
        request.getfixturevalue(session_fixture_name(request.getfixturevalue("session_factory")))
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
    # An AsyncSession's events are its sync session's.
    return lambda: capturing(
        getattr(current_session.session, "sync_session", current_session.session)
    )


QueryAssertion = Callable[[int], AbstractContextManager[QueryLog]]


@pytest.fixture
def query_engine(request: pytest.FixtureRequest, session_factory: SessionFactory) -> Engine:
    """The engine the app's queries run on: the async engine's sync core for an async app."""
    if session_factory.is_async:
        engine: Engine = request.getfixturevalue("async_db_engine").sync_engine
        return engine
    return request.getfixturevalue("db_engine")  # type: ignore[no-any-return]


@pytest.fixture
def assert_num_queries(query_engine: Engine) -> QueryAssertion:
    """`with assert_num_queries(2): …` fails, listing the SQL, unless exactly 2 ran."""
    return lambda expected: assert_queries(query_engine, expected, exact=True)


@pytest.fixture
def assert_max_num_queries(query_engine: Engine) -> QueryAssertion:
    return lambda expected: assert_queries(query_engine, expected, exact=False)


__all__ = [
    "_database_access",
    "_network_access",
    "assert_max_num_queries",
    "assert_num_queries",
    "capture_after_commit",
    "current_session",
    "db_blocker",
    "db_engine",
    "db_seed",
    "db_session",
    "kit",
    "query_engine",
    "savepoint",
    "session_factory",
]
