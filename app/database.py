"""Engine, session factory and the `get_db` dependency; the engine is built on first use.

Building it lazily lets tests (and the CLI) settle the settings before any connection exists.
"""

import threading
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import pydantic_core
from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from app.connection_liveness import SOCKET_DRIVERS, check_sockets_on_checkout
from app.settings import Settings, get_settings

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# An execution option: the transactions of a session bound with it only read.
READS_ONLY = "resource_api_reads_only"
# How long a SQLite writer waits for the write lock before "database is locked".
SQLITE_BUSY_SECONDS = 5.0


class WriteTurn:
    """A SQLite file's writers in this process, one transaction at a time, woken in turn
    (see `_use_real_sqlite_transactions`). Held from BEGIN IMMEDIATE until the transaction's
    commit or rollback, or until its connection is gone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: weakref.ref[Connection] | None = None

    @property
    def held(self) -> bool:
        return self._lock.locked()

    def take(self, connection: Connection) -> None:
        # Past the wait, the writer goes on to BEGIN IMMEDIATE: SQLite then says "locked".
        if self._lock.acquire(timeout=SQLITE_BUSY_SECONDS):
            self._holder = weakref.ref(connection, self._give_back_if_holder)

    def give_back(self, connection: Connection) -> None:
        if self._holder is not None and self._holder() is connection:
            self._give_back_if_holder(self._holder)

    def _give_back_if_holder(self, holder: "weakref.ref[Connection]") -> None:
        if self._holder is holder:
            self._holder = None
            self._lock.release()


_write_turns: "weakref.WeakKeyDictionary[Engine, WriteTurn]" = weakref.WeakKeyDictionary()


def sqlite_write_turn(engine: Engine) -> WriteTurn | None:
    """The turn a SQLite file engine's writers take (None for any other engine)."""
    return _write_turns.get(engine)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp on every backend (SQLite drops the zone; we put UTC back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def json_text(value: Any) -> str:
    """JSON columns' text, compact, by pydantic's serializer: a tenth of `json.dumps`' time."""
    return pydantic_core.to_json(value).decode()


def build_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the same SQLite fixes for the app and the tests."""
    parsed = make_url(url)
    kwargs.setdefault("json_serializer", json_text)
    if parsed.get_backend_name() != "sqlite":
        if parsed.get_driver_name() not in SOCKET_DRIVERS:
            return create_engine(url, pool_pre_ping=True, **kwargs)
        engine = create_engine(url, **kwargs)
        check_sockets_on_checkout(engine)
        return engine
    in_memory = parsed.database in (None, "", ":memory:")
    if in_memory:
        for pool_option in ("pool_size", "max_overflow", "pool_timeout"):
            kwargs.pop(pool_option, None)  # one connection, shared: nothing to size
        kwargs.setdefault("poolclass", StaticPool)
    elif parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
    _use_real_sqlite_transactions(engine, file_backed=not in_memory)
    return engine


def _use_real_sqlite_transactions(engine: Engine, *, file_backed: bool) -> None:
    """Let SQLAlchemy, not the sqlite3 driver, emit BEGIN (SQLAlchemy's documented recipe).

    The driver's default mode begins transactions late and commits around SAVEPOINTs on its
    own, which breaks nested transactions: a test's rollback would silently leave rows behind.

    A file shared by concurrent requests begins IMMEDIATE: a deferred transaction that reads,
    then writes after another connection wrote, fails at once with "database is locked"
    (busy_timeout does not apply to that upgrade); taking the write lock up front makes it wait.
    Reads need no write lock: a session marked `reads_only` begins deferred and, under WAL,
    reads the last commit while a writer works, instead of queueing behind every write.

    This process's writers take turns at a lock of their own before BEGIN IMMEDIATE: SQLite's
    own wait polls with growing sleeps, so under contention the writer that has waited longest
    sleeps longest and keeps losing to newcomers (four bulk writers: p99 25 times the p50).
    Other processes are still kept in order by busy_timeout.
    """
    turn = WriteTurn()
    if file_backed:
        _write_turns[engine] = turn

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if file_backed:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not file_backed or connection.get_execution_options().get(READS_ONLY, False):
            connection.exec_driver_sql("BEGIN")
            return
        turn.take(connection)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            turn.give_back(connection)
            raise

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(connection: Connection) -> None:
        turn.give_back(connection)


def reads_only(session: Session) -> None:
    """Mark a session, before it begins, as one that only reads: on a SQLite file its
    transactions take no write lock. Elsewhere (PostgreSQL, a test's joined session) it is
    left alone."""
    bind = session.bind
    if isinstance(bind, Engine) and bind.dialect.name == "sqlite" and not session.in_transaction():
        session.bind = _reading(bind)


@lru_cache(maxsize=8)
def _reading(engine: Engine) -> Engine:
    return engine.execution_options(**{READS_ONLY: True})


def reads_outside_transactions(session: Session) -> None:
    """Mark a session, before it begins, as one whose every statement reads on its own: on
    PostgreSQL, in autocommit. Under READ COMMITTED (the default) each statement of a
    transaction takes its own snapshot anyway, so a read's BEGIN and ROLLBACK were two round
    trips of five for nothing. Only for work that never writes; elsewhere as `reads_only`."""
    bind = session.bind
    if isinstance(bind, Engine) and not session.in_transaction():
        session.bind = _for_reads(bind)


def read_connection() -> Connection:
    """A connection of `get_db`'s engine, for work that only reads, as
    `reads_outside_transactions` would have its session read; closed by the caller. No
    session: opening and closing one cost a quarter of a read's CPU."""
    return _for_reads(get_engine()).connect()


def _for_reads(engine: Engine) -> Engine:
    if engine.dialect.name == "postgresql":
        return _autocommitting(engine)
    return _reading(engine) if engine.dialect.name == "sqlite" else engine


@lru_cache(maxsize=8)
def _autocommitting(engine: Engine) -> Engine:
    return engine.execution_options(isolation_level="AUTOCOMMIT")


@cache
def get_engine() -> Engine:
    return pooled_engine(get_settings())


def pooled_engine(settings: Settings) -> Engine:
    """The engine `settings` describe, its pool sized as they say."""
    return build_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
    )


@cache
def get_session_factory() -> sessionmaker[Session]:
    # Objects stay readable after commit: responses and events are built from them.
    return sessionmaker(bind=get_engine(), autoflush=False, expire_on_commit=False)


def get_db() -> Iterator[Session]:
    """One session per request. It never commits: the request's unit of work does."""
    with get_session_factory()() as session:
        yield session


def utcnow() -> datetime:
    return datetime.now(UTC)
