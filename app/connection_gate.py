"""The connection gate: no more sessions at once than the pool has connections, the rest
waiting on the event loop, and each admitted session's work in a thread of its own."""

import asyncio
from collections import deque
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

    Built on a future per waiter, one timer for all of them and a thread per slot: anyio's
    semaphore, timeout and thread hop cost twice as much CPU per request under load (a
    cancel scope, a task lookup and a lock each), and asyncio's timeout a timer per waiter.
    """

    def __init__(self, capacity: int, timeout: float) -> None:
        self.capacity = capacity
        self.timeout = timeout
        self.in_use = 0
        self._free = capacity
        # Waiters in arrival order, each with its deadline: all wait as long, so the first
        # is the next to expire too, and one timer (for the first) serves them all.
        self._waiters: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
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
        async with self.slot():
            return await _outlasting_cancellation(self._threads.submit(work, *args))

    def close(self) -> None:
        """Let the threads end once idle (each app lifespan has a gate of its own)."""
        self._threads.shutdown(wait=False)

    async def _take(self) -> None:
        """A slot: at once if one is free (never while others wait: a slot given back goes
        to the longest waiter), else in turn, or `ConnectionsExhausted` after `timeout`."""
        if self._free:
            self._free -= 1
        else:
            await self._wait_for_slot()
        self.in_use += 1

    async def _wait_for_slot(self) -> None:
        loop = asyncio.get_running_loop()
        handed: asyncio.Future[None] = loop.create_future()
        self._waiters.append((loop.time() + self.timeout, handed))
        if self._timer is None:
            self._timer = loop.call_at(self._waiters[0][0], self._expire_waiters)
        with DB_CONNECTIONS_WAITING.track_inprogress():
            try:
                await handed
            except asyncio.CancelledError:
                if handed.done() and not handed.cancelled() and handed.exception() is None:
                    self._hand_on()  # handed a slot, and cancelled before taking it
                raise

    def _give_back(self) -> None:
        self.in_use -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        """A slot to the longest waiter still waiting, else back to the free ones."""
        while self._waiters:
            _, handed = self._waiters.popleft()
            if not handed.done():
                handed.set_result(None)
                return
        self._free += 1

    def _expire_waiters(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = None
        now = loop.time()
        while self._waiters and (self._waiters[0][1].done() or self._waiters[0][0] <= now):
            _, handed = self._waiters.popleft()
            if not handed.done():
                handed.set_exception(ConnectionsExhausted())
        if self._waiters:
            self._timer = loop.call_at(self._waiters[0][0], self._expire_waiters)


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
