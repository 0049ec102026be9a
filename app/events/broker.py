"""Fan-out of events to live subscribers, behind a small interface.

The in-process broker serves one server process; a broker for several processes implements
the same `EventBroker` protocol.

Publishing never waits for the subscribers: it queues the events and returns, and a fan-out
pass takes every event published meanwhile, so a subscriber is reached once per pass however
many writes landed. A subscriber whose server writes frames (app.events.frames) gets the
pass's frames, built once for all, in one write and no task of its own; others get the
events in a queue. Passes take about 1 / (1 + FAN_OUT_PAUSE) of the event loop at most: the
next one waits FAN_OUT_PAUSE times as long as passes take (smoothed), and carries what came
meanwhile (under load, passes grow instead of crowding out the requests).
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from app.events.frames import FrameWriter
from app.events.types import Event
from app.metrics import EVENTS_LOST, FAN_OUT_PASS_SECONDS, LIVE_SUBSCRIBERS

logger = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_SIZE = 1000
# Unsent bytes a subscriber's socket may hold before it counts as too far behind.
SUBSCRIBER_BUFFER_BYTES = 1024 * 1024
FAN_OUT_PAUSE = 5
# The pause follows the passes' cost smoothed: one slow pass (a collection, a burst of
# events) paused the next for five times its length, gathering a bigger pass behind it.
PASS_SMOOTHING = 0.25
# What a subscriber's queue holds: events; a subscriber's own frames, when it shares the
# queue with them (app.api.live_updates); None once it overflowed.
Queued = Event | str | None


def too_far_behind(writer: FrameWriter) -> bool:
    """Whether a subscriber's socket holds more unsent than it may (it does not read)."""
    return writer.buffered_bytes() > SUBSCRIBER_BUFFER_BYTES


class SubscriberOverflow(Exception):
    """A subscriber fell too far behind; it must reconnect (and re-read what it missed)."""


class Subscription:
    """The events of one subscriber, in order, delivered on the subscriber's own event loop:
    written as frames where its connection takes them, else queued."""

    def __init__(
        self, queue: "asyncio.Queue[Queued] | None", writer: FrameWriter | None = None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = queue
        self._writer = writer
        self._overflowed = asyncio.Event()
        self._ended = False

    def deliver(self, events: Sequence[Event], frames: bytes) -> None:
        """Thread- and loop-safe: publishers may run anywhere. `frames` are the events'."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._take(events, frames)
        else:
            self._loop.call_soon_threadsafe(self._take, events, frames)

    def end(self) -> None:
        """Nothing more is delivered from now on, even by a fan-out already under way."""
        self._ended = True

    def _take(self, events: Sequence[Event], frames: bytes) -> None:
        if self._ended or self._overflowed.is_set():
            return  # dropped: nothing more is kept for it
        if self._writer is not None:
            if too_far_behind(self._writer):
                self._overflow(len(events))  # what is buffered may still reach it
            else:
                self._writer.write_frames(frames)
            return
        assert self._queue is not None
        for position, event in enumerate(events):
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                self._overflow(len(events) - position)
                return

    def _overflow(self, not_taken: int) -> None:
        behind = not_taken
        if self._queue is not None:
            while not self._queue.empty():
                behind += isinstance(self._queue.get_nowait(), Event)
            self._queue.put_nowait(None)  # tells the reader it overflowed
        logger.warning("dropping a subscriber that fell %d events behind", behind)
        # What it never gets: what it had queued, and the rest of this pass.
        EVENTS_LOST.labels("subscriber_overflow").inc(behind)
        self._overflowed.set()

    async def overflowed(self) -> None:
        """Returns once the subscriber has fallen too far behind (it may not be reading)."""
        await self._overflowed.wait()

    async def next(self) -> Event:
        """The next event, for a subscriber whose queue holds nothing else."""
        assert self._queue is not None, "a subscriber by frames has no queue"
        item = await self._queue.get()
        if item is None:
            raise SubscriberOverflow
        assert isinstance(item, Event), "a shared queue is read by its owner"
        return item


class EventBroker(Protocol):
    # False while events cannot be delivered; `lost_events` counts what was dropped meanwhile.
    connected: bool
    lost_events: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, events: Sequence[Event]) -> None: ...

    def subscribe(
        self, queue: "asyncio.Queue[Queued] | None" = None, writer: FrameWriter | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        """Events from now on: as frames through `writer`, or into `queue` (bounded: a full
        one overflows), or a new queue."""

    @property
    def subscriber_count(self) -> int: ...


class InProcessBroker:
    """Fan-out within one process: publishing hands events straight to the subscribers."""

    connected = True
    lost_events = 0

    def __init__(self, max_pending: int = SUBSCRIBER_QUEUE_SIZE) -> None:
        self._max_pending = max_pending
        self._subscriptions: set[Subscription] = set()
        self._pending: list[Event] = []  # published, not yet fanned out
        self._next_pass = 0.0  # on the loop's clock
        self._pass_seconds: float | None = None  # what a pass takes, smoothed

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._subscriptions.clear()

    async def publish(self, events: Sequence[Event]) -> None:
        if not events or not self._subscriptions:
            return
        if not self._pending:
            loop = asyncio.get_running_loop()
            pause = self._next_pass - loop.time()
            if pause > 0:
                loop.call_later(pause, self._fan_out)
            else:
                loop.call_soon(self._fan_out)
        self._pending.extend(events)

    def _fan_out(self) -> None:
        started = time.perf_counter()
        events, self._pending = self._pending, []
        frames = b"".join(event.frame for event in events)
        for subscription in list(self._subscriptions):
            subscription.deliver(events, frames)
        took = time.perf_counter() - started
        FAN_OUT_PASS_SECONDS.observe(took)
        last = took if self._pass_seconds is None else self._pass_seconds
        self._pass_seconds = smoothed = last + PASS_SMOOTHING * (took - last)
        self._next_pass = asyncio.get_running_loop().time() + smoothed * FAN_OUT_PAUSE

    @asynccontextmanager
    async def subscribe(
        self, queue: "asyncio.Queue[Queued] | None" = None, writer: FrameWriter | None = None
    ) -> AsyncIterator[Subscription]:
        if writer is None and queue is None:
            queue = asyncio.Queue(self._max_pending)
        subscription = Subscription(queue, writer)
        self._subscriptions.add(subscription)
        try:
            with LIVE_SUBSCRIBERS.track_inprogress():
                yield subscription
        finally:
            subscription.end()
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
