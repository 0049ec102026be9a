"""Real server processes for black-box tests: `resource-api serve` on a free port."""

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.factories import PASSWORD

STARTUP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_env(data_dir: Path, database_url: str, **settings: str) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "development",
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "",
        # Test servers sign up and log in many users from one address; the rest stay default.
        "RATE_LIMIT_REGISTRATIONS_PER_ADDRESS": "1000/minute",
        "RATE_LIMIT_LOGIN_PER_ADDRESS": "1000/minute",
        **settings,
    }


def run_cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Server(NamedTuple):
    url: str
    pid: int


@contextmanager
def _serving(
    command: list[str],
    env: dict[str, str],
    probe_path: str,
    log: IO[bytes] | None = None,
    stop_seconds: float = 15,
) -> Iterator[Server]:
    """Run `command` (a server taking --port) until the block ends; yields once `probe_path`
    answers. Its log (stderr) goes to `log`, when given. At the end it is asked to stop, and
    killed if it has not within `stop_seconds`."""
    port = free_port()
    process = subprocess.Popen([*command, "--port", str(port)], env=env, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, "the server exited during start-up"
            try:
                httpx.get(f"{base}{probe_path}", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield Server(base, process.pid)
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=stop_seconds)
        except subprocess.TimeoutExpired:  # stuck (a deadlocked baseline): no more waiting
            process.kill()
            process.wait()


def running_server(
    env: dict[str, str],
    *serve_args: str,
    log: IO[bytes] | None = None,
    program: Sequence[str] = (sys.executable, "-m", "app.cli"),
) -> ContextManager[Server]:
    """`resource-api serve` (this checkout's, or another install's `program`) until the block
    ends; yields the server once `/health` answers."""
    command = [*program, "serve", "--log-level", "warning", *serve_args]
    return _serving(command, env, "/health", log)


def running_demo_upstream() -> ContextManager[Server]:
    """`resource-api demo-upstream`, the stand-in external service, until the block ends."""
    command = [sys.executable, "-m", "app.cli", "demo-upstream", "--log-level", "warning"]
    return _serving(command, dict(os.environ), "/resources/1")


def running_asgi_app(app: str, env: dict[str, str]) -> ContextManager[Server]:
    """`uvicorn <app>` (module:attribute) until the block ends: the benchmarks' baselines. One
    that does not stop within two seconds is killed: a deadlocked baseline never stops, and
    waiting out each one cost `make bench` a quarter of a minute."""
    command = [sys.executable, "-m", "uvicorn", app, "--log-level", "warning", "--no-access-log"]
    return _serving(command, env, "/", stop_seconds=2)


def register_and_log_in(base: str, username: str) -> dict[str, str]:
    """Bearer headers for a new user on a running server."""
    api = f"{base}/api/v1"
    user = {"email": f"{username}@example.com", "username": username, "password": PASSWORD}
    assert httpx.post(f"{api}/users", json=user).status_code == 201
    token = httpx.post(f"{api}/auth/token", data={"username": username, "password": PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def open_socket(server: Server, headers: dict[str, str], **options: Any) -> ClientConnection:
    """A `/ws/updates` socket on a running server, as `headers`' user."""
    url = server.url.replace("http://", "ws://") + "/ws/updates"
    return connect(url, additional_headers=headers, **options)


def raw_websocket(
    server: Server, headers: dict[str, str], receive_buffer: int | None = None
) -> socket.socket:
    """A `/ws/updates` socket upgraded by hand and left bare: it answers nothing (pings
    included) and reads only what its test reads; `receive_buffer` caps its kernel buffer."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws/updates HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: {headers['Authorization']}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1024)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


@contextmanager
def subscribed_socket(server: Server, headers: dict[str, str]) -> Iterator[ClientConnection]:
    """A `/ws/updates` socket that has subscribed (and heard so) to the updates."""
    with open_socket(server, headers) as websocket:
        websocket.send(json.dumps({"type": "subscribe", "channel": "updates"}))
        assert json.loads(websocket.recv(timeout=10)) == {
            "type": "subscribed",
            "channel": "updates",
        }
        yield websocket


def server_rss_mib(pid: int) -> float:
    """A server process's resident memory, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")
