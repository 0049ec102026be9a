"""Dependencies shared by the routers: the session, the unit of work, the caller, the resource."""

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from app import auth
from app.api.openapi import may_answer
from app.connection_gate import ConnectionGate
from app.database import get_db, read_connection, reads_only, reads_outside_transactions
from app.errors import DomainError
from app.events.broker import EventBroker
from app.metrics import EVENTS_PUBLISHED
from app.models import User
from app.schemas import UserCreate
from app.services import users
from app.services.resources import Reading
from app.unit_of_work import UnitOfWork

T = TypeVar("T")


def connection_gate(connection: HTTPConnection) -> ConnectionGate:
    gate: ConnectionGate = connection.app.state.connection_gate
    return gate


Gate = Annotated[ConnectionGate, Depends(connection_gate)]


@may_answer(503)
async def connection_slot(connection: HTTPConnection) -> AsyncIterator[None]:
    """Wait (on the event loop, not a thread) until a database connection may be had."""
    async with connection_gate(connection).slot():
        yield


# Any query may find the database gone (OperationalError → 503).
may_answer(503)(get_db)

# Safe methods only read; a WebSocket's session only checks its caller.
READING_METHODS = frozenset({"GET", "HEAD"})


async def request_session(
    connection: HTTPConnection,
    # "function" scope: the session closes, and the unit of work commits, before the
    # response is sent, so a client never sees a 2xx for a write that then fails to commit.
    session: Annotated[Session, Depends(get_db, scope="function")],
) -> Session:
    """The request's session; a GET's (or a WebSocket's) reads without taking a write lock."""
    if connection.scope["type"] == "websocket" or connection.scope["method"] in READING_METHODS:
        reads_only(session)
    return session


UngatedSession = Annotated[Session, Depends(request_session)]


async def gated_session(
    _slot: Annotated[None, Depends(connection_slot, scope="function")], session: UngatedSession
) -> Session:
    """The request's session, once a connection slot is held; both end before the response."""
    return session


DbSession = Annotated[Session, Depends(gated_session)]


SessionOpener = Callable[[], Generator[Session]]


def session_opener(connection: HTTPConnection) -> SessionOpener:
    """`get_db`, or whatever a test put in its place (the seed's tests do)."""
    opener: SessionOpener = connection.app.dependency_overrides.get(get_db, get_db)
    return opener


class OneHop:
    """Work on the request's session in one thread hop: the session is opened, used and closed
    in the same worker thread, where FastAPI's sync dependencies and endpoint would take a hop
    each (four for a read, seven to nine for a write). Each hop costs more than a small query.
    A connection slot is held for the hop alone."""

    def __init__(self, gate: ConnectionGate, open_session: SessionOpener) -> None:
        self._gate = gate
        self._open_session = open_session

    async def _hop(self, work: Callable[..., T], *args: Any) -> T:
        return await self._gate.run(work, *args)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """In the worker thread: the request's session, closed on leaving."""
        sessions = self._open_session()
        try:
            yield next(sessions)
        finally:
            sessions.close()


class Reader(OneHop):
    """A read in one thread hop, its answer serialized there too. It reads on a connection
    of its own, with no session (opening and closing one cost a quarter of a read's CPU),
    unless a test has put its own session in place of `get_db`'s: then on that session."""

    async def run(self, read: Callable[[Reading], T]) -> T:
        return await self._hop(self._in_thread, read)

    def _in_thread(self, read: Callable[[Reading], T]) -> T:
        if self._open_session is get_db:
            with read_connection() as connection:
                return read(connection)
        with self._session() as session:
            reads_outside_transactions(session)
            return read(session)


@may_answer(503)  # no connection came free in time
async def reader(connection: HTTPConnection) -> Reader:
    """For `async` read routes."""
    return Reader(connection_gate(connection), session_opener(connection))


Reads = Annotated[Reader, Depends(reader)]


async def run_with_connection(
    gate: ConnectionGate, session: Session, work: Callable[..., T], *args: Any
) -> T:
    """`work(session, *args)` in a thread, holding a connection slot only meanwhile.

    For requests that spend most of their time without the database (hashing a password,
    a WebSocket that stays open): the session's transaction ends, giving its connection back,
    before the slot is released.
    """
    async with gate.slot():
        try:
            return await run_in_threadpool(work, session, *args)
        finally:
            await run_in_threadpool(session.rollback)


def password_hashing(connection: HTTPConnection) -> CapacityLimiter:
    """Admits as many hashes at once as there are cores; the rest wait on the event loop."""
    limiter: CapacityLimiter = connection.app.state.password_hashing
    return limiter


PasswordHashing = Annotated[CapacityLimiter, Depends(password_hashing)]


async def hashed_new_password(data: UserCreate, hashing: PasswordHashing) -> str:
    """The new account's password hash, made before the request takes a connection."""
    return await anyio.to_thread.run_sync(auth.hash_password, data.password, limiter=hashing)


HashedPassword = Annotated[str, Depends(hashed_new_password)]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_broker(connection: HTTPConnection) -> EventBroker:
    broker: EventBroker = connection.app.state.broker
    return broker


Broker = Annotated[EventBroker, Depends(get_broker)]


async def _commit_then_publish(uow: UnitOfWork, broker: EventBroker) -> None:
    try:
        events = await run_in_threadpool(uow.commit)
    except BaseException:
        await run_in_threadpool(uow.rollback)
        raise
    EVENTS_PUBLISHED.inc(len(events))
    await broker.publish(events)


@may_answer(409, 503)  # the commit: a conflict, or the database gone
async def unit_of_work(session: DbSession, broker: Broker) -> AsyncIterator[UnitOfWork]:
    """Commit once when the route returns; publish its events only after that commit.

    An error rolls everything back, but for a refusal that is itself a change to keep
    (`DomainError.keeps_changes`), which is committed before it is answered."""
    uow = UnitOfWork(session)
    try:
        yield uow
    except DomainError as refusal:
        if refusal.keeps_changes:
            await _commit_then_publish(uow, broker)
        else:
            await run_in_threadpool(uow.rollback)
        raise
    except BaseException:
        await run_in_threadpool(uow.rollback)
        raise
    await _commit_then_publish(uow, broker)


def in_own_unit_of_work(session: Session, work: Callable[..., T], *args: Any) -> T:
    """`work(uow, *args)`, committed: for a route that holds a connection only for a piece
    of its work (`run_with_connection`) and so cannot take `Work`. Nothing it does announces
    an event."""
    uow = UnitOfWork(session)
    result = work(uow, *args)
    uow.commit()
    return result


Work = Annotated[UnitOfWork, Depends(unit_of_work, scope="function")]


BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


@may_answer(401)
def current_login(session: DbSession, token: BearerToken) -> tuple[User, auth.AccessClaims]:
    """The caller and what their token says (its session, for logging out)."""
    return users.authenticate(session, token)


CurrentLogin = Annotated[tuple[User, auth.AccessClaims], Depends(current_login)]


def current_user(login: CurrentLogin) -> User:
    return login[0]


CurrentUser = Annotated[User, Depends(current_user)]


@may_answer(401, 503)
async def signed_in(session: UngatedSession, gate: Gate, token: BearerToken) -> None:
    """Refuse anonymous callers, holding a connection only for the check: for routes that then
    wait on something other than the database."""
    await run_with_connection(gate, session, users.caller_from_token, token)


SignedIn = Annotated[None, Depends(signed_in)]
