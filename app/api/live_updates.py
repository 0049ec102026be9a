"""The `/ws/updates` protocol, for one connected client.

Client → server: `{"type": "subscribe" | "unsubscribe", "channel": "updates"}` or
`{"type": "ping"}`. Server → client: `subscribed`, `unsubscribed`, `pong`, the change events
(`resource.created|updated|deleted`) while subscribed, and `{"type": "error", "detail": …}` for
anything it cannot understand; the socket stays open after an error.

What a connection may cost is bounded: its frames (LiveLimits.max_message_bytes, 1009 past
it), its message rate (4029), the connections of one user (4029), the events queued for it
(1013). It lives only as long as its login: closed with 4001 when the token expires and 4003
when the user is deactivated or deleted (checked every `revalidate_seconds`).
"""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskStatus
from fastapi import WebSocket, status
from starlette.websockets import WebSocketDisconnect, WebSocketState

from app.events.broker import (
    SUBSCRIBER_QUEUE_SIZE,
    EventBroker,
    Queued,
    Subscription,
    too_far_behind,
)
from app.events.frames import frame_writer, text_frame
from app.events.types import UPDATES_CHANNEL
from app.services.users import TokenHolder
from app.settings import Settings

# How long a goodbye may take: a client that does not read never gets it, and must not hold on.
CLOSE_GRACE_SECONDS = 1.0
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_USER_GONE = 4003
CLOSE_TOO_MANY = 4029


@dataclass(frozen=True)
class LiveLimits:
    max_message_bytes: int
    messages_per_second: float
    connections_per_user: int
    revalidate_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "LiveLimits":
        return cls(
            settings.ws_max_message_bytes,
            settings.ws_messages_per_second,
            settings.ws_connections_per_user,
            settings.ws_revalidate_seconds,
        )


StillActive = Callable[[], Awaitable[bool]]


class LiveConnections:
    """The open `/ws/updates` connections of this process: counted per user, and told
    goodbye at shutdown."""

    def __init__(self) -> None:
        self._open: set[LiveUpdates] = set()
        self._per_user: Counter[int] = Counter()

    async def serve(
        self,
        websocket: WebSocket,
        subprotocol: str | None,
        broker: EventBroker,
        limits: LiveLimits,
        holder: TokenHolder,
        still_active: StillActive,
    ) -> None:
        """Accept the (authenticated) socket and serve it until either side closes."""
        await websocket.accept(subprotocol=subprotocol)
        connection = LiveUpdates(websocket, broker, limits)
        if self._per_user[holder.user_id] >= limits.connections_per_user:
            # Accepted only to say why: a refused handshake cannot carry a reason.
            await connection.close(CLOSE_TOO_MANY, "Too many connections for this user")
            return
        self._open.add(connection)
        self._per_user[holder.user_id] += 1
        try:
            await connection.run(holder.expires_at, still_active)
        finally:
            self._open.discard(connection)
            self._per_user[holder.user_id] -= 1
            if not self._per_user[holder.user_id]:
                del self._per_user[holder.user_id]

    async def close_all(self, code: int, reason: str) -> None:
        await asyncio.gather(
            *(connection.close(code, reason) for connection in list(self._open)),
            return_exceptions=True,
        )


class MessageBudget:
    """A token bucket: `rate` messages a second, in bursts of up to twice that."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = 2 * rate
        self.tokens = self.capacity
        self.checked = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.checked) * self.rate)
        self.checked = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class LiveUpdates:
    def __init__(self, websocket: WebSocket, broker: EventBroker, limits: LiveLimits) -> None:
        self.websocket = websocket
        self.broker = broker
        self.limits = limits
        self._budget = MessageBudget(limits.messages_per_second)
        # Where the server takes the app's own frames, replies and events are written as
        # frames, in the order they are made (events built once for all subscribers).
        self._writer = frame_writer(websocket.scope)
        # Elsewhere, one sender, so replies and events never interleave mid-frame: the
        # subscription queues events here too, so an event costs a subscriber one queue slot
        # and no task of its own; bounded, so a client that does not read overflows (1013)
        # instead of growing the server's memory.
        self._outbox: asyncio.Queue[Queued] = asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)
        self._subscription: tuple[anyio.CancelScope, Subscription] | None = None
        self._connection_scope = anyio.CancelScope()

    async def run(self, expires_at: datetime, still_active: StillActive) -> None:
        """Serve until the client leaves, or its login ends."""
        try:
            with self._connection_scope:
                async with anyio.create_task_group() as tasks:
                    if self._writer is None:
                        tasks.start_soon(self._send_loop)
                    tasks.start_soon(self._watch_login, expires_at, still_active)
                    await self._receive_loop(tasks)
                    tasks.cancel_scope.cancel()
        except WebSocketDisconnect:
            return

    async def close(self, code: int, reason: str) -> None:
        """Close from the server's side; the receive loop then ends on the client's reply."""
        if self.websocket.client_state is WebSocketState.CONNECTED:
            await self.websocket.close(code, reason)

    async def drop(self, code: int, reason: str) -> None:
        """Close, and stop serving even if the client never reads the goodbye."""
        with anyio.move_on_after(CLOSE_GRACE_SECONDS):
            await self.close(code, reason)
        self._connection_scope.cancel()

    async def _watch_login(self, expires_at: datetime, still_active: StillActive) -> None:
        while True:
            left = (expires_at - datetime.now(UTC)).total_seconds()
            if left <= 0:
                await self.close(CLOSE_TOKEN_EXPIRED, "Token expired; reconnect with a new one")
                return
            await anyio.sleep(min(left, self.limits.revalidate_seconds))
            if datetime.now(UTC) < expires_at and not await still_active():
                await self.close(CLOSE_USER_GONE, "User deactivated or deleted")
                return

    async def _send_loop(self) -> None:
        while True:
            frame = await self._outbox.get()
            if frame is None or self.websocket.application_state is not WebSocketState.CONNECTED:
                return  # overflowed, or closed by the server: nothing more to say
            await self.websocket.send_text(frame if isinstance(frame, str) else frame.text)

    async def _receive_loop(self, tasks: anyio.abc.TaskGroup) -> None:
        while True:
            frame = await self.websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            if not self._budget.take():
                await self.close(CLOSE_TOO_MANY, "Too many messages; slow down")
                continue  # until the client's close arrives
            text, data = frame.get("text"), frame.get("bytes")
            if len(text or data or "") > self.limits.max_message_bytes:
                # The server caps frames too (ws_max_size); this holds under any server.
                await self.close(status.WS_1009_MESSAGE_TOO_BIG, "Message too big")
                continue
            reply = await self._handle(text, tasks)
            if reply is not None:
                await self._say(reply)

    async def _say(self, message: dict[str, Any]) -> None:
        if self._writer is None:
            await self._outbox.put(json.dumps(message))
        elif too_far_behind(self._writer):
            await self.drop(status.WS_1013_TRY_AGAIN_LATER, "Too far behind; reconnect")
        else:
            self._writer.write_frames(text_frame(json.dumps(message)))

    async def _handle(self, text: str | None, tasks: anyio.abc.TaskGroup) -> dict[str, Any] | None:
        """The reply to a client's frame; None where it was given already."""
        if text is None:
            return _error("Frames must be JSON text")
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
            return _error("Frames must be JSON text")
        if not isinstance(request, dict):
            return _error("Frames must be JSON objects")
        kind = request.get("type")
        if kind == "ping":
            return {"type": "pong"}
        if kind not in ("subscribe", "unsubscribe"):
            return _error("Unknown message type; expected subscribe, unsubscribe or ping")
        channel = request.get("channel", UPDATES_CHANNEL)
        if channel != UPDATES_CHANNEL:
            return _error(f"Unknown channel; the only channel is {UPDATES_CHANNEL!r}")
        if kind == "subscribe" and self._subscription is None:
            self._subscription = await tasks.start(self._subscribe)
            return None
        if kind == "unsubscribe" and self._subscription is not None:
            scope, subscription = self._subscription
            subscription.end()  # no event after the reply, though the scope ends later
            scope.cancel()
            self._subscription = None
        return {"type": f"{kind}d", "channel": channel}

    async def _subscribe(
        self, *, task_status: TaskStatus[tuple[anyio.CancelScope, Subscription]]
    ) -> None:
        with anyio.CancelScope() as scope:
            # The reply, then the subscription, with no wait between: no event comes before
            # the reply, and none committed after it is missed.
            await self._say({"type": "subscribed", "channel": UPDATES_CHANNEL})
            queue = self._outbox if self._writer is None else None
            async with self.broker.subscribe(queue, self._writer) as subscription:
                task_status.started((scope, subscription))
                # The sender may be stuck behind a client that does not read: watch apart.
                await subscription.overflowed()
            await self.drop(status.WS_1013_TRY_AGAIN_LATER, "Too far behind; reconnect")


def _error(detail: str) -> dict[str, Any]:
    return {"type": "error", "detail": detail}
