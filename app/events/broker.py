"""Fan-out of events to live subscribers, behind a small interface.

The in-process broker serves one server process; a broker for several processes implements
the same `EventBroker` protocol.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from app.events.types import Event
from app.metrics import EVENTS_LOST, LIVE_SUBSCRIBERS

logger = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_SIZE = 1000


class SubscriberOverflow(Exception):
    """A subscriber fell too far behind; it must reconnect (and re-read what it missed)."""


class Subscription:
    """The events of one subscriber, in order, delivered on the subscriber's own event loop."""

    def __init__(self, max_pending: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(max_pending)
        self._overflowed = asyncio.Event()

    def deliver(self, events: Sequence[Event]) -> None:
        """Thread- and loop-safe: publishers may run anywhere."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._enqueue(events)
        else:
            self._loop.call_soon_threadsafe(self._enqueue, events)

    def _enqueue(self, events: Sequence[Event]) -> None:
        if self._overflowed.is_set():
            return  # dropped: nothing more is kept for it
        for position, event in enumerate(events):
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                behind = self._queue.qsize()
                logger.warning("dropping a subscriber that fell %d events behind", behind)
                # What it never gets: what it had queued, this event and the rest of the batch.
                EVENTS_LOST.labels("subscriber_overflow").inc(behind + len(events) - position)
                while not self._queue.empty():
                    self._queue.get_nowait()
                self._queue.put_nowait(None)  # tells the reader it overflowed
                self._overflowed.set()
                return

    async def overflowed(self) -> None:
        """Returns once the subscriber has fallen too far behind (it may not be reading)."""
        await self._overflowed.wait()

    async def next(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise SubscriberOverflow
        return event


class EventBroker(Protocol):
    # False while events cannot be delivered; `lost_events` counts what was dropped meanwhile.
    connected: bool
    lost_events: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, events: Sequence[Event]) -> None: ...

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]: ...

    @property
    def subscriber_count(self) -> int: ...


class InProcessBroker:
    """Fan-out within one process: publishing hands events straight to the subscribers."""

    connected = True
    lost_events = 0

    def __init__(self, max_pending: int = SUBSCRIBER_QUEUE_SIZE) -> None:
        self._max_pending = max_pending
        self._subscriptions: set[Subscription] = set()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._subscriptions.clear()

    async def publish(self, events: Sequence[Event]) -> None:
        if events:
            for subscription in list(self._subscriptions):
                subscription.deliver(events)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        subscription = Subscription(self._max_pending)
        self._subscriptions.add(subscription)
        try:
            with LIVE_SUBSCRIBERS.track_inprogress():
                yield subscription
        finally:
            self._subscriptions.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)


def build_broker(broker_url: str, channel: str) -> EventBroker:
    """In-process without a URL; Redis pub/sub (across processes and hosts) with `redis://…`."""
    if not broker_url:
        return InProcessBroker()
    from app.events.redis_broker import RedisBroker  # the `redis` extra, only when configured

    return RedisBroker(broker_url, channel)
