"""The HTTP server: uvicorn on httptools, with the limits an internet-facing process needs.

httptools (llhttp) is the fastest parser uvicorn offers (bench/parser_bench.py), but it caps
neither the request head nor the time a client may take to send it: one socket trickling an
endless header would grow the process and hold it. `GuardedHttpToolsProtocol` adds:

- a cap on the request head (request line and headers), whether it arrives whole or in
  pieces: over it, 431;
- a deadline for the request head, from the first byte awaited: past it, 408;
- a cap on open connections per process: at the cap, a new connection evicts the one that
  has waited longest without sending a request (a slow or idle client), and is refused with
  a JSON 503 only when every connection is busy with a request;
- problem answers (RFC 9457) for the requests the parser refuses (every answer is JSON).

The idle keep-alive timeout and the bounded graceful shutdown are uvicorn's own settings.

WebSockets run on uvicorn's sans-I/O protocol with one addition: the app may write frames it
built itself (app.events.frames), so that one event frame reaches a thousand subscribers as
a thousand plain socket writes.
"""

import asyncio
import json
import logging
import weakref
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from app.events.frames import FRAME_WRITER_EXTENSION
from app.problems import PROBLEM_MEDIA_TYPE, problem_body
from app.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def raw_problem_response(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for answers before any request."""
    body = json.dumps(problem_body(status, detail)).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: {PROBLEM_MEDIA_TYPE}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


HEADERS_TOO_LARGE = raw_problem_response(431, "Request header fields too large")
BAD_REQUEST = raw_problem_response(400, "Invalid HTTP request")
HEAD_TIMEOUT = raw_problem_response(408, "Request headers not received in time")
TOO_MANY_CONNECTIONS = raw_problem_response(503, "Too many connections; retry shortly")

# The request line's fixed parts ("GET " … " HTTP/1.1\r\n") and the blank line that ends a head.
_HEAD_FRAMING = 16


class HeadTooLarge(Exception):
    """Raised inside the parser's callback: the parser then refuses the request."""


# Per server (tests may run several in one process), in the order they began waiting.
Waiting = dict["GuardedHttpToolsProtocol", None]
_waiting_connections: "weakref.WeakKeyDictionary[ServerState, Waiting]" = (
    weakref.WeakKeyDictionary()
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with a head cap, a head deadline, a connection cap and JSON refusals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read here, not passed in: worker processes rebuild the protocol from its import path.
        settings = get_settings()
        self.max_connections = settings.max_connections
        self.head_timeout = settings.header_timeout
        self.max_head_bytes = settings.max_header_bytes
        self._head_deadline: asyncio.TimerHandle | None = None
        # Between requests and within a head (until the parser has it all): what arrived
        # meanwhile, so that a head that never ends is cut at the cap, not at memory's end.
        self._in_head = True
        self._received_in_head = 0
        self._head_size = 0  # of the head being parsed, from its parts
        self._refusal = BAD_REQUEST
        # This server's connections that wait for a request, longest-waiting first: eviction
        # takes the first, in constant time however many there are.
        self._waiting = _waiting_connections.setdefault(self.server_state, {})

    # -- connection cap -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_waiting()
        if len(self.connections) > self.max_connections and not self._evict_longest_waiting():
            logger.warning("refusing a connection: %d open, all busy", len(self.connections) - 1)
            self._answer_and_close(TOO_MANY_CONNECTIONS)

    def _evict_longest_waiting(self) -> bool:
        for victim in self._waiting:
            if victim is not self:
                del self._waiting[victim]
                self.connections.discard(victim)  # counted out now, not when the loop gets to it
                victim.transport.close()
                return True
        return False

    @property
    def awaiting_request(self) -> bool:
        return (self.cycle is None or self.cycle.response_complete) and not (
            self.transport.is_closing()
        )

    # -- request-head deadline ------------------------------------------------------------

    def _start_waiting(self) -> None:
        self._waiting.pop(self, None)
        self._waiting[self] = None  # last in line
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _stop_waiting(self) -> None:
        self._waiting.pop(self, None)
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.awaiting_request and self._in_head:
            self._answer_and_close(HEAD_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        if self.awaiting_request and self._head_deadline is None:
            # A kept-alive connection begins its next request: its head gets a deadline too.
            self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_slow)
        if self._in_head:
            self._received_in_head += len(data)
        super().data_received(data)
        if self._in_head and self._received_in_head > self.max_head_bytes:
            self._answer_and_close(HEADERS_TOO_LARGE)  # a head still unfinished past the cap
        elif not self.awaiting_request:
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._waiting.pop(self, None)
            self._waiting[self] = None  # idle from now; the keep-alive timeout runs

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._stop_waiting()  # a WebSocket is busy, never one to evict
        super().handle_websocket_upgrade()

    # -- head cap -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_size = _HEAD_FRAMING
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_size + len(self.parser.get_method()) > self.max_head_bytes:
            self._refusal = HEADERS_TOO_LARGE  # arrived whole, or its last piece did
            raise HeadTooLarge
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._received_in_head = True, 0  # what comes next is the next head
        super().on_message_complete()

    # -- answers of our own -----------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """The parser refused the request: a head over the cap is 431, anything else 400."""
        self._answer_and_close(self._refusal)

    def _answer_and_close(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


class FrameWritingWebSocketProtocol(WebSocketsSansIOProtocol):
    """Offers the app a `FrameWriter` (FRAME_WRITER_EXTENSION) for its own frames."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # Frames built elsewhere fit only a connection without extensions (compression).
        if self.handshake_initiated and not self.close_sent and not self.conn.extensions:
            self.scope["extensions"][FRAME_WRITER_EXTENSION] = {"writer": self}

    def write_frames(self, frames: bytes) -> None:
        if not (self.close_sent or self.disconnected or self.transport.is_closing()):
            self.transport.write(frames)

    def buffered_bytes(self) -> int:
        return self.transport.get_write_buffer_size()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Everything `uvicorn.run`/`uvicorn.Config` needs besides the app, host, port and workers."""
    options: dict[str, Any] = {
        "http": f"{__name__}:GuardedHttpToolsProtocol",
        "timeout_keep_alive": settings.keep_alive_timeout,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        "ws": f"{__name__}:FrameWritingWebSocketProtocol",
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_ping_interval": settings.ws_ping_interval_seconds or None,
        "ws_ping_timeout": settings.ws_ping_timeout_seconds,
        # Compressing each event once per subscriber cost more CPU and memory than it saved
        # (bench/fanout_bench.py); events are small JSON.
        "ws_per_message_deflate": False,
        "proxy_headers": bool(settings.trusted_proxies),
        "server_header": False,
    }
    if settings.trusted_proxies:
        options["forwarded_allow_ips"] = settings.trusted_proxies
    return options
