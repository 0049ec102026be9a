"""ASGI middleware of our own."""

import re
import time
import uuid
from collections.abc import Callable, Sequence

from fastapi import HTTPException, status
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from app.logs import REQUEST_ID
from app.problems import problem_response

TOO_LARGE = "Request body too large"


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with a JSON 413.

    FastAPI's own `max_body_size` answers in plain text, which breaks the rule that every
    error is a JSON problem; this one answers early when Content-Length is too
    big, and mid-stream (chunked uploads) through the app's own exception handlers.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = problem_response(scope, status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE)
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE)
            return message

        await self.app(scope, counting_receive, send)


class AllowedHosts:
    """Serve only the hosts in ALLOWED_HOSTS (`*` any, `.example.com` a domain and its
    subdomains); any other `Host` gets a JSON 400, or a refused WebSocket handshake."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        patterns = [host.lower() for host in allowed_hosts]
        self.exact = {host for host in patterns if not host.startswith(".")}
        self.domains = tuple(host for host in patterns if host.startswith("."))

    def allows(self, host_header: str) -> bool:
        host = host_header.lower()
        # An IPv6 literal keeps its brackets; anything else loses its port.
        host = host[: host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]
        return host in self.exact or host.endswith(self.domains) or f".{host}" in self.domains

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any_host or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.allows(Headers(scope=scope).get("host", "")):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await WebSocketClose(status.WS_1008_POLICY_VIOLATION, "Invalid host")(
                scope, receive, send
            )
        else:
            response = problem_response(scope, status.HTTP_400_BAD_REQUEST, "Invalid host header")
            await response(scope, receive, send)


class HeadAsGet:
    """Answer `HEAD` for every `GET` route: run it as `GET` and send the head alone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def head_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # In place (and back after), so that the middleware outside sees the route that served it.
        scope["method"] = "GET"
        try:
            await self.app(scope, receive, head_only)
        finally:
            scope["method"] = "HEAD"


# Told of every HTTP request once it is answered (or failed): its scope, status and seconds.
RequestObserver = Callable[[Scope, int, float], None]


class ObserveRequests:
    """Times every HTTP request and hands its outcome to the observers (the access log, the
    metrics): one layer for both, however many are on."""

    def __init__(self, app: ASGIApp, observers: Sequence[RequestObserver]) -> None:
        self.app = app
        self.observers = tuple(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless an answer starts

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            seconds = time.perf_counter() - started
            for observe in self.observers:
                observe(scope, status, seconds)


# A client's own request id is kept when it is a plain token of sane length.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestId:
    """Every request gets an id (`X-Request-ID` from the client when sane, else a new one),
    kept in `request.state.request_id` and echoed in the answer, to tie reports to logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).setdefault("x-request-id", request_id)
            await send(message)

        logged_as = REQUEST_ID.set(request_id)  # every log line of this request names it
        try:
            await self.app(scope, receive, with_request_id)
        finally:
            REQUEST_ID.reset(logged_as)


# The API serves JSON only: nothing may run, frame or be sniffed. The docs pages run Swagger
# UI and ReDoc from the app's own files (app.api.docs), started by an inline script; nothing
# comes from another host.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"


API_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": API_CSP,
}


class SecurityHeaders:
    """The headers every answer carries; HSTS only when served over HTTPS."""

    def __init__(self, app: ASGIApp, docs_paths: frozenset[str]) -> None:
        self.app = app
        self.docs_paths = docs_paths
        # Built once, not per request: the API's fields, and the docs pages' own CSP.
        self.api_fields = {name.lower(): value for name, value in API_SECURITY_HEADERS.items()}
        self.docs_fields = {**self.api_fields, "content-security-policy": DOCS_CSP}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = self.docs_fields if scope["path"] in self.docs_paths else self.api_fields
        if scope.get("scheme") == "https":
            fields = {**fields, "strict-transport-security": HSTS}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in fields.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)
