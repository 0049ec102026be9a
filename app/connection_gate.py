"""The connection gate: no more sessions at once than the pool has connections, the rest
waiting on the event loop, and each admitted session's work in a thread of its own."""

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

from app.metrics import DB_CONNECTIONS_IN_USE, DB_CONNECTIONS_WAITING

T = TypeVar("T")


class ConnectionGate:
    """Admits at most `capacity` sessions at once; the rest wait on the event loop.

    Waiting here, rather than in the pool, is what prevents the classic sync-session deadlock:
    requests blocked inside `pool.connect()` hold worker threads, and the requests that do hold
    connections then find no thread to finish on and give them back.

    Built on asyncio's own primitives and a thread per slot: anyio's semaphore, timeout and
    thread hop cost twice as much CPU per request under load (a cancel scope, a task lookup
    and a lock each), a fifth of a read's time on the event loop.
    """

    def __init__(self, capacity: int, timeout: float) -> None:
        self.capacity = capacity
        self.timeout = timeout
        self._slots = asyncio.Semaphore(capacity)
        self.in_use = 0
        # One thread per slot: a holder never waits for a thread.
        self._threads = ThreadPoolExecutor(max(capacity, 1), thread_name_prefix="db-slot")

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._take()
        try:
            with DB_CONNECTIONS_IN_USE.track_inprogress():
                yield
        finally:
            self._give_back()

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in a thread of the gate's, holding a slot for just that long.

        A caller cancelled meanwhile still waits for the thread, which goes on using its
        connection, and takes its answer (a write it committed still announces its events):
        letting the slot go first would admit one session more than there are connections.
        """
        await self._take()
        try:
            with DB_CONNECTIONS_IN_USE.track_inprogress():
                return await _outlasting_cancellation(self._threads.submit(work, *args))
        finally:
            self._give_back()

    def close(self) -> None:
        """Let the threads end once idle (each app lifespan has a gate of its own)."""
        self._threads.shutdown(wait=False)

    async def _take(self) -> None:
        if self._slots.locked():
            with DB_CONNECTIONS_WAITING.track_inprogress():
                try:
                    async with asyncio.timeout(self.timeout):
                        await self._slots.acquire()
                except TimeoutError:
                    raise ConnectionsExhausted from None
        else:
            await self._slots.acquire()  # free: returns at once, no timer
        self.in_use += 1

    def _give_back(self) -> None:
        self.in_use -= 1
        self._slots.release()


async def _outlasting_cancellation(work: "Future[T]") -> T:
    """The thread's result, however often the waiting task is cancelled meanwhile (anyio
    cancels a task again at each of its awaits until it leaves the cancelled scope)."""
    running = asyncio.wrap_future(work)
    while not running.done():
        with suppress(asyncio.CancelledError):
            await asyncio.shield(running)
    return running.result()


class ConnectionsExhausted(Exception):
    """No connection came free within the pool timeout."""
