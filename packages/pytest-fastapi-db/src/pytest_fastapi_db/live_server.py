"""Clients beyond TestClient: the app served by uvicorn on a free port, in a thread (black-box and
WebSocket tests), and a sync client that runs an async app on the test session's event loop."""

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STARTUP_SECONDS = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveServer:
    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def __str__(self) -> str:
        return self.url


@contextmanager
def serving(app: Any) -> Iterator[LiveServer]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("pytest-fastapi-db: the live server did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(STARTUP_SECONDS)


class LoopClient:
    """A sync client for an async app: each request runs an httpx client on `loop`, the loop
    the test's async connections belong to (TestClient would run the app on a loop of its own,
    where they cannot be used). The app's lifespan runs on that loop too."""

    def __init__(self, app: Any, base_url: str, loop: asyncio.AbstractEventLoop) -> None:
        import httpx

        self._app = app
        self._loop = loop
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
        self._lifespan = app.router.lifespan_context(app)
        self.base_url = self._client.base_url

    def __enter__(self) -> "LoopClient":
        self._loop.run_until_complete(self._lifespan.__aenter__())
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.run_until_complete(self._lifespan.__aexit__(*exc_info))

    def request(self, method: str, url: str, **options: Any) -> Any:
        return self._loop.run_until_complete(self._client.request(method, url, **options))

    def get(self, url: str, **options: Any) -> Any:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> Any:
        return self.request("POST", url, **options)

    def put(self, url: str, **options: Any) -> Any:
        return self.request("PUT", url, **options)

    def patch(self, url: str, **options: Any) -> Any:
        return self.request("PATCH", url, **options)

    def delete(self, url: str, **options: Any) -> Any:
        return self.request("DELETE", url, **options)

    def head(self, url: str, **options: Any) -> Any:
        return self.request("HEAD", url, **options)
