"""Writes in one thread hop.

A resource write took five hops into the thread pool (the session, the caller, the endpoint,
the commit, the close), each costing more than its query. `Writes` takes one: in a worker
thread the request's session is opened (by `get_db`, or whatever a test put in its place),
the caller found, the work done and committed once, and the session closed; the events are
published on the event loop after the commit. What needs no database comes first, on the
loop: the token's signature (401) and the caller's write limit (429).
"""

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Response
from starlette.requests import HTTPConnection

from app import auth
from app.api.deps import (
    BearerToken,
    OneHop,
    SessionOpener,
    connection_gate,
    get_broker,
    session_opener,
)
from app.api.openapi import may_answer
from app.api.rate_limiting import enforce, rate_limits
from app.connection_gate import ConnectionGate
from app.events.broker import EventBroker
from app.events.types import Event
from app.metrics import EVENTS_PUBLISHED
from app.services import users
from app.services.resources import Caller
from app.unit_of_work import UnitOfWork

T = TypeVar("T")


class Writer(OneHop):
    """Runs one write for the caller whose token's `claims` it holds (checked already)."""

    def __init__(
        self,
        gate: ConnectionGate,
        open_session: SessionOpener,
        broker: EventBroker,
        claims: auth.AccessClaims,
    ) -> None:
        super().__init__(gate, open_session)
        self._broker = broker
        self._claims = claims

    async def run(self, work: Callable[[UnitOfWork, Caller], T]) -> T:
        """`work(uow, caller)`, committed once; its events published after the commit."""
        outcome: tuple[T, list[Event]] = await self._hop(self._in_thread, work)
        result, events = outcome
        if events:
            EVENTS_PUBLISHED.inc(len(events))
            await self._broker.publish(events)
        return result

    def _in_thread(self, work: Callable[[UnitOfWork, Caller], T]) -> tuple[T, list[Event]]:
        """An error (a refusal included: no resource write keeps changes it refuses) rolls
        everything back."""
        with self._session() as session:
            uow = UnitOfWork(session)
            try:
                result = work(uow, users.caller_of(session, self._claims))
                return result, uow.commit()
            except BaseException:
                uow.rollback()
                raise


@may_answer(401, 409, 429, 503)  # 409, 503: the commit (a conflict, or the database gone)
async def writer(connection: HTTPConnection, token: BearerToken, response: Response) -> Writer:
    claims = users.read_claims(token)
    limits = rate_limits(connection)
    if limits is not None:
        # By the token's subject (the user's id in every token we issue): no query first.
        await enforce(limits, limits.policies.writes_per_user, claims.subject, response)
    gate, open_session = connection_gate(connection), session_opener(connection)
    return Writer(gate, open_session, get_broker(connection), claims)


Writes = Annotated[Writer, Depends(writer)]
