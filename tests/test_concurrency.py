"""No deadlock under load: far more concurrent requests than connections, all answered."""

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from fastapi.testclient import TestClient
from pytest_fastapi_db.blocker import DatabaseBlocker
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import database
from app.api.deps import Reader
from app.connection_gate import ConnectionGate
from app.database import (
    Base,
    WriteTurn,
    build_engine,
    get_db,
    reads_only,
    reads_outside_transactions,
    sqlite_write_turn,
)
from app.main import create_app
from app.models import Resource, User
from app.repositories import SHOWN_BY_ID, Reading
from tests.conftest import scratch_engine
from tests.problems import assert_problem
from tests.servers import register_and_log_in, run_cli, running_server, server_env

CONCURRENT_REQUESTS = 256
POOL_SIZE = 5


@pytest.mark.asyncio
async def test_256_concurrent_requests_on_a_pool_of_5_are_all_answered(
    tmp_path: Path, scratch_database_url: str
) -> None:
    env = server_env(
        tmp_path,
        scratch_database_url,
        DB_POOL_SIZE=str(POOL_SIZE),
        DB_MAX_OVERFLOW="0",
        DB_POOL_TIMEOUT="30",
        # Few threads, as on a small container: without the gate these run out first.
        THREAD_POOL_SIZE=str(POOL_SIZE + 3),
        PASSWORD_HASH_TIME_COST="1",
        PASSWORD_HASH_MEMORY_KIB="64",
    )
    assert run_cli(env, "migrate").returncode == 0
    with running_server(env) as (base, _pid):
        headers = register_and_log_in(base, "loader")
        paths = ["/api/v1/resources?limit=100", "/api/v1/users/me", "/api/v1/async-endpoint"]
        limits = httpx.Limits(max_connections=CONCURRENT_REQUESTS)
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
            started = time.monotonic()
            responses = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        client.get(paths[i % len(paths)], timeout=60)
                        for i in range(CONCURRENT_REQUESTS)
                    )
                ),
                timeout=90,
            )
            elapsed = time.monotonic() - started

    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 503}, statuses
    busy = [response for response in responses if response.status_code == 503]
    assert all(response.headers.get("retry-after") for response in busy)
    assert statuses.count(200) >= CONCURRENT_REQUESTS // 2
    assert elapsed < 60


@pytest.mark.asyncio
async def test_concurrent_writes_all_succeed(tmp_path: Path, scratch_database_url: str) -> None:
    """On the default SQLite file too: concurrent writers wait their turn instead of failing."""
    env = server_env(tmp_path, scratch_database_url)
    assert run_cli(env, "migrate").returncode == 0
    with running_server(env) as (base, _pid):
        headers = register_and_log_in(base, "writers")
        async with httpx.AsyncClient(base_url=base, headers=headers) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/api/v1/resources", json={"name": f"w{i}"}, timeout=60)
                    for i in range(64)
                )
            )
            listed = await client.get("/api/v1/resources?limit=1")
    assert [response.status_code for response in responses] == [201] * 64
    assert listed.headers["x-total-count"] == "64"


def test_on_a_sqlite_file_reads_go_on_while_a_writer_holds_the_lock(
    live_writer: tuple[str, dict[str, str]], scratch_database_url: str
) -> None:
    """Reads take no write lock (WAL gives them the last commit); writes still queue for it."""
    if not scratch_database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock (PostgreSQL's readers never wait for writers)")
    base, headers = live_writer
    url = f"{base}/api/v1/resources"
    created = httpx.post(url, json={"name": "Before"}, headers=headers).json()
    writer = sqlite3.connect(scratch_database_url.removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    try:
        with ThreadPoolExecutor(1) as pool:
            write = pool.submit(
                httpx.post, url, json={"name": "After"}, headers=headers, timeout=30
            )
            started = time.monotonic()
            assert httpx.get(url, headers=headers).json() == [created]
            assert httpx.get(f"{url}/{created['id']}", headers=headers).status_code == 200
            assert time.monotonic() - started < 2  # not the 5 s busy timeout
            time.sleep(0.5)
            assert not write.done(), "the write did not wait for the lock"
            writer.execute("ROLLBACK")
            assert write.result().status_code == 201
    finally:
        writer.close()


@pytest.fixture
def sqlite_file_engine(scratch_database_url: str, db_blocker: DatabaseBlocker) -> Iterator[Engine]:
    why = "SQLite's write lock (PostgreSQL has no such turn)"
    yield from scratch_engine(scratch_database_url, db_blocker, "sqlite", why)


def _turn(engine: Engine) -> WriteTurn:
    turn = sqlite_write_turn(engine)
    assert turn is not None
    return turn


def test_a_sqlite_write_transaction_holds_the_turn_until_it_ends(
    sqlite_file_engine: Engine,
) -> None:
    turn = _turn(sqlite_file_engine)
    with sqlite_file_engine.connect() as connection:
        connection.begin()
        assert turn.held
        connection.commit()
        assert not turn.held
        connection.begin()
        connection.rollback()
        assert not turn.held
        connection.begin()
    assert not turn.held  # closed mid-transaction
    with Session(sqlite_file_engine) as session:
        reads_only(session)
        session.execute(text("SELECT 1"))
        assert not turn.held  # a reader takes no turn


def test_a_sqlite_writer_waits_for_the_turn_and_gets_it_when_the_holder_ends(
    sqlite_file_engine: Engine,
) -> None:
    holder = sqlite_file_engine.connect()
    holder.begin()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(lambda: sqlite_file_engine.connect().begin().commit())
        time.sleep(0.3)
        assert not waiting.done()
        holder.rollback()
        waiting.result(timeout=2)
    holder.close()
    assert not _turn(sqlite_file_engine).held


def test_a_failed_begin_gives_the_turn_back(
    sqlite_file_engine: Engine, scratch_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (here another connection, outside the turn) holds SQLite's lock past
    the busy timeout: the BEGIN fails, and the turn is free for the next writer."""
    monkeypatch.setattr(database, "SQLITE_BUSY_SECONDS", 0.2)
    engine = build_engine(scratch_database_url)  # connects with the short timeout
    other = sqlite3.connect(scratch_database_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"), engine.connect() as connection:
            connection.begin()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not _turn(engine).held
    with engine.begin() as connection:  # and the next writer gets it
        connection.execute(text("SELECT 1"))
    engine.dispose()


# Inside one transaction, now() is when it began: later statements run after it.
IN_A_TRANSACTION_BEGUN_EARLIER = text("SELECT now() < statement_timestamp()")


@pytest.mark.parametrize(("outside", "shares_a_transaction"), [(True, False), (False, True)])
def test_a_read_outside_transactions_takes_none_on_postgresql(
    postgres_engine: Engine, outside: bool, shares_a_transaction: bool
) -> None:
    """Reads run each statement on its own (no BEGIN, no ROLLBACK: two round trips fewer);
    other sessions keep their transaction."""
    with Session(postgres_engine) as session:
        if outside:
            reads_outside_transactions(session)
        session.execute(text("SELECT 1"))
        time.sleep(0.01)
        assert session.scalar(IN_A_TRANSACTION_BEGUN_EARLIER) is shares_a_transaction


@pytest.mark.asyncio
@pytest.mark.parametrize("cancelled_by", ["a deadline", "a server's forced shutdown"])
async def test_a_cancelled_read_keeps_its_slot_until_its_thread_is_done(cancelled_by: str) -> None:
    """The thread goes on using its connection: giving the slot back before it ends would let
    one more session in than there are connections (and the pool would block a thread). A
    deadline (anyio) cancels the task again at each await until it leaves the scope; a
    server's forced shutdown cancels it once (`Task.cancel`)."""
    gate = ConnectionGate(capacity=1, timeout=5)
    started, release = threading.Event(), threading.Event()

    def no_database() -> Iterator[Any]:
        yield SimpleNamespace(bind=None)  # a session on nothing: the read never asks it

    def read(_session: Any) -> str:
        started.set()
        release.wait(10)
        return "done"

    reader = Reader(gate, no_database)
    outcome: list[str] = []
    deadline = anyio.CancelScope()

    async def request() -> None:
        with deadline:
            outcome.append(await reader.run(read))

    task = asyncio.ensure_future(request())
    try:
        assert await anyio.to_thread.run_sync(started.wait, 10)
        if cancelled_by == "a deadline":
            deadline.cancel()
        else:
            task.cancel()
        await asyncio.sleep(0.05)
        assert gate.in_use == 1
        release.set()
        await asyncio.wait_for(task, 10)
        assert outcome == ["done"]  # its thread's answer, which the cancelled request waited for
        assert gate.in_use == 0
        assert await reader.run(lambda _session: "next") == "next"
    finally:
        release.set()
        gate.close()


@pytest.fixture
def app_engine(
    scratch_database_url: str, db_blocker: DatabaseBlocker, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    """The app's engine (what `get_db`'s sessions use), on a scratch database with the schema."""
    engine = build_engine(scratch_database_url)
    monkeypatch.setattr(database, "get_engine", lambda: engine)
    with db_blocker.unblocked():
        Base.metadata.create_all(engine)
        yield engine
    engine.dispose()


@pytest.mark.asyncio
@pytest.mark.parametrize("fails", [False, True])
async def test_a_read_without_a_tests_session_runs_on_a_pooled_connection_of_its_own(
    app_engine: Engine, fails: bool
) -> None:
    """No session is opened; the connection reads as a session marked for reads would (on
    PostgreSQL each statement on its own, on a SQLite file without the write lock) and goes
    back to the pool, whether the read succeeds or fails."""
    gate = ConnectionGate(capacity=1, timeout=5)
    postgres = app_engine.dialect.name == "postgresql"
    seen: dict[str, Any] = {}

    def read(reading: Reading) -> int:
        seen["kind"] = type(reading)
        seen["found"] = SHOWN_BY_ID.first(reading, {"id": 1})
        time.sleep(0.01)
        if postgres:
            seen["in a transaction begun earlier"] = reading.scalar(IN_A_TRANSACTION_BEGUN_EARLIER)
        else:  # a statement through SQLAlchemy begins a transaction: a reading one
            reading.scalar(text("SELECT count(*) FROM resources"))
            seen["write turn held"] = _turn(app_engine).held
        if fails:
            raise LookupError("the read failed")
        return 7

    try:
        reader = Reader(gate, get_db)
        if fails:
            with pytest.raises(LookupError):
                await reader.run(read)
        else:
            assert await reader.run(read) == 7
    finally:
        gate.close()
    assert seen["kind"] is Connection
    assert seen["found"] is None
    assert not seen.get("in a transaction begun earlier")
    assert not seen.get("write turn held")
    pool = app_engine.pool
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_read_with_a_tests_session_in_place_runs_on_that_session(
    db_session: Session, user: User
) -> None:
    """It sees what the test's transaction holds (the kit's promise for every route)."""
    resource = Resource(name="not committed", owner_id=user.id)
    db_session.add(resource)
    db_session.flush()
    gate = ConnectionGate(capacity=1, timeout=5)

    def the_tests_session() -> Iterator[Session]:
        yield db_session

    def read(reading: Reading) -> Any:
        assert reading is db_session
        return SHOWN_BY_ID.first(reading, {"id": resource.id})

    try:
        found = await Reader(gate, the_tests_session).run(read)
    finally:
        gate.close()
    assert found is not None
    assert found[1] == resource.name


@pytest.mark.parametrize("path", ["/api/v1/resources/1", "/api/v1/resources"])
def test_a_read_on_its_own_connection_answers_503_when_the_database_is_gone(
    monkeypatch: pytest.MonkeyPatch, db_blocker: DatabaseBlocker, path: str
) -> None:
    """No test's session in place: the read's own connection fails as a session's would."""
    gone = build_engine("postgresql+psycopg://nobody@127.0.0.1:1/test_nowhere")
    monkeypatch.setattr(database, "get_engine", lambda: gone)
    with db_blocker.unblocked(), TestClient(create_app()) as client:
        response = client.get(path)
    assert_problem(response, 503, "Database unavailable")
