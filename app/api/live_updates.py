"""The `/ws/updates` protocol, for one connected client.

Client → server: `{"type": "subscribe" | "unsubscribe", "channel": "updates"}` or
`{"type": "ping"}`. Server → client: `subscribed`, `unsubscribed`, `pong`, the change events
(`resource.created|updated|deleted`) while subscribed, and `{"type": "error", "detail": …}` for
anything it cannot understand; the socket stays open after an error.
"""

import asyncio
import json
from typing import Any

import anyio
from anyio.abc import TaskStatus
from fastapi import WebSocket, status
from starlette.websockets import WebSocketDisconnect, WebSocketState

from app.events.broker import EventBroker, SubscriberOverflow
from app.events.types import UPDATES_CHANNEL

OUTBOX_SIZE = 256


class LiveConnections:
    """The open `/ws/updates` connections of this process, so shutdown can say goodbye."""

    def __init__(self) -> None:
        self._open: set[LiveUpdates] = set()

    async def serve(self, websocket: WebSocket, broker: EventBroker) -> None:
        connection = LiveUpdates(websocket, broker)
        self._open.add(connection)
        try:
            await connection.run()
        finally:
            self._open.discard(connection)

    async def close_all(self, code: int, reason: str) -> None:
        await asyncio.gather(
            *(connection.close(code, reason) for connection in list(self._open)),
            return_exceptions=True,
        )


class LiveUpdates:
    def __init__(self, websocket: WebSocket, broker: EventBroker) -> None:
        self.websocket = websocket
        self.broker = broker
        # One sender, so replies and events never interleave mid-frame; bounded, so a client
        # that does not read slows its own subscription down instead of the server's memory.
        self._outbox, self._outbox_reader = anyio.create_memory_object_stream[dict[str, Any]](
            OUTBOX_SIZE
        )
        self._subscription: anyio.CancelScope | None = None

    async def run(self) -> None:
        """Serve until the client leaves."""
        try:
            async with self._outbox, self._outbox_reader, anyio.create_task_group() as tasks:
                tasks.start_soon(self._send_loop)
                await self._receive_loop(tasks)
                tasks.cancel_scope.cancel()
        except WebSocketDisconnect:
            return

    async def close(self, code: int, reason: str) -> None:
        """Close from the server's side; the receive loop then ends on the client's reply."""
        if self.websocket.client_state is WebSocketState.CONNECTED:
            await self.websocket.close(code, reason)

    async def _send_loop(self) -> None:
        async for message in self._outbox_reader:
            if self.websocket.application_state is not WebSocketState.CONNECTED:
                return  # closed by the server (shutdown, overflow): nothing more to say
            await self.websocket.send_json(message)

    async def _receive_loop(self, tasks: anyio.abc.TaskGroup) -> None:
        while True:
            frame = await self.websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            reply = await self._handle(frame.get("text"), tasks)
            await self._outbox.send(reply)

    async def _handle(self, text: str | None, tasks: anyio.abc.TaskGroup) -> dict[str, Any]:
        if text is None:
            return _error("Frames must be JSON text")
        try:
            request = json.loads(text)
        except ValueError:
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
            self._subscription = await tasks.start(self._forward_events)
        elif kind == "unsubscribe" and self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        return {"type": f"{kind}d", "channel": channel}

    async def _forward_events(self, *, task_status: TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            async with self.broker.subscribe() as subscription:
                # Started only once subscribed: nothing committed after the reply is missed.
                task_status.started(scope)
                try:
                    while True:
                        event = await subscription.next()
                        await self._outbox.send(event.message())
                except SubscriberOverflow:
                    await self.websocket.close(
                        status.WS_1013_TRY_AGAIN_LATER, "Too far behind; reconnect"
                    )


def _error(detail: str) -> dict[str, Any]:
    return {"type": "error", "detail": detail}
