"""Fan-out across server processes and hosts through Redis pub/sub.

Every process publishes its committed events to one Redis channel and relays what it hears on
that channel to its own subscribers, its own events included, so all subscribers see one
order. Redis is best effort: if it is away, writes still succeed and their events are lost
(logged and counted), and the listener reconnects by itself when Redis returns.
"""

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from app.events.broker import InProcessBroker, Queued, Subscription
from app.events.frames import FrameWriter
from app.events.types import Event
from app.metrics import EVENTS_LOST

logger = logging.getLogger(__name__)

DEFAULT_CHANNEL = "resource-api:updates"
RECONNECT_DELAYS = ExponentialBackoff(cap=5.0, base=0.1)
# A write waits at most this long for Redis before its events are given up as lost.
PUBLISH_TIMEOUT_SECONDS = 1.0


def _encode(events: Sequence[Event]) -> str:
    return json.dumps([{"type": event.type, "data": event.data} for event in events])


def _decode(payload: bytes | str) -> list[Event]:
    return [Event(item["type"], item["data"]) for item in json.loads(payload)]


class RedisBroker:
    def __init__(self, url: str, channel: str = DEFAULT_CHANNEL, client_name: str = "") -> None:
        self.url = url
        self.channel = channel
        self.lost_events = 0
        self.connected = False
        # Named per process, so an operator (or a test) can tell the connections apart.
        self._client_name = client_name or f"resource-api-{os.getpid()}"
        self._local = InProcessBroker()
        self._redis: Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        self._redis = Redis.from_url(
            self.url,
            client_name=self._client_name,
            socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS,
            health_check_interval=10,
            retry=Retry(RECONNECT_DELAYS, retries=1),
        )
        self._listening = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(), name="redis-event-listener")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()
        await self._local.stop()

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        assert self._redis is not None, "the broker was not started"
        payload = _encode(events)
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                try:
                    await self._redis.publish(self.channel, payload)
                except (RedisError, OSError):
                    # After a Redis restart the pooled connections are dead, and only the
                    # first use tells: drop the idle ones (not the listener's) and try once more.
                    await self._redis.connection_pool.disconnect(inuse_connections=False)
                    await self._redis.publish(self.channel, payload)
        except (RedisError, OSError, TimeoutError) as exc:
            self.lost_events += len(events)
            EVENTS_LOST.labels("broker_unavailable").inc(len(events))
            logger.error(
                "lost %d event(s): Redis unavailable (%s); %d lost so far",
                len(events),
                exc,
                self.lost_events,
            )

    def subscribe(
        self, queue: "asyncio.Queue[Queued] | None" = None, writer: FrameWriter | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        return self._local.subscribe(queue, writer)

    @property
    def subscriber_count(self) -> int:
        return self._local.subscriber_count

    async def wait_until_listening(self) -> None:
        await self._listening.wait()

    async def _listen(self) -> None:
        """Relay the channel to local subscribers, reconnecting for as long as the app runs."""
        assert self._redis is not None
        failures = 0
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._set_connected(True)
                    failures = 0
                    async for message in pubsub.listen():
                        await self._relay(message)
            except (RedisError, OSError) as exc:
                self._set_connected(False)
                failures += 1
                delay = RECONNECT_DELAYS.compute(failures)
                logger.warning("Redis listener lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _relay(self, message: dict[str, Any]) -> None:
        if message["type"] != "message":
            return
        try:
            events = _decode(message["data"])
        except (ValueError, KeyError, TypeError):
            logger.error("ignoring a malformed message on %s", self.channel)
            return
        await self._local.publish(events)

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            logger.info("Redis listener %s", "connected" if connected else "disconnected")
        self.connected = connected
        if connected:
            self._listening.set()
        else:
            self._listening.clear()
