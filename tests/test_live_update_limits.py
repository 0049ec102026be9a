"""WebSocket abuse against a real server: big, deep and rapid frames, too many sockets, slow
readers, and sockets that outlive their login."""

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.servers import (
    Server,
    open_socket,
    raw_websocket,
    register_and_log_in,
    run_cli,
    running_server,
    server_env,
    server_rss_mib,
)

SECRET = "a-test-signing-key-of-at-least-32-bytes!"
MAX_MESSAGE_BYTES = 4096
MESSAGES_PER_SECOND = 10
SUBSCRIBE = json.dumps({"type": "subscribe", "channel": "updates"})
UNSUBSCRIBE = json.dumps({"type": "unsubscribe", "channel": "updates"})
PING = json.dumps({"type": "ping"})


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ws") / "ws.db"


@pytest.fixture(scope="module")
def server(database: Path) -> Iterator[Server]:
    env = server_env(
        database.parent,
        f"sqlite:///{database}",
        SECRET_KEY=SECRET,
        WS_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES),
        WS_MESSAGES_PER_SECOND=str(MESSAGES_PER_SECOND),
        WS_CONNECTIONS_PER_USER="2",
        WS_REVALIDATE_SECONDS="0.2",
    )
    assert run_cli(env, "migrate").returncode == 0
    with running_server(env) as server:
        yield server


_users = iter(range(10**6))


@pytest.fixture
def headers(server: Server) -> dict[str, str]:
    return register_and_log_in(server.url, f"ws{next(_users)}")


def close_code(websocket: ClientConnection, within: float = 5) -> int:
    """Read until the server closes; the code it closed with."""
    deadline = time.monotonic() + within
    with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012  (read until closed)
        while time.monotonic() < deadline:
            websocket.recv(timeout=deadline - time.monotonic())
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def assert_open(websocket: ClientConnection) -> None:
    websocket.send(PING)
    assert json.loads(websocket.recv(timeout=5)) == {"type": "pong"}


def test_a_frame_over_the_cap_closes_the_socket_with_1009(
    server: Server, headers: dict[str, str]
) -> None:
    with open_socket(server, headers, max_size=None) as websocket:
        websocket.send("x" * (MAX_MESSAGE_BYTES + 1))
        assert close_code(websocket) == 1009


def test_a_junk_frame_under_the_cap_gets_an_error_and_the_socket_stays_open(
    server: Server, headers: dict[str, str]
) -> None:
    with open_socket(server, headers) as websocket:
        websocket.send("x" * (MAX_MESSAGE_BYTES - 10))
        assert json.loads(websocket.recv(timeout=5))["type"] == "error"
        assert_open(websocket)


@pytest.mark.parametrize(
    "nested", ["[" * 1000, "[" * 1000 + "]" * 1000, '{"a":' * 700 + "1", "[" * 2000 + "]" * 2000]
)
def test_deeply_nested_frames_get_an_error_and_the_socket_stays_open(
    server: Server, headers: dict[str, str], nested: str
) -> None:
    with open_socket(server, headers) as websocket:
        websocket.send(nested)
        assert json.loads(websocket.recv(timeout=5))["type"] == "error"
        assert_open(websocket)


def test_a_flood_of_messages_closes_the_socket_with_4029(
    server: Server, headers: dict[str, str]
) -> None:
    with open_socket(server, headers) as websocket:
        with contextlib.suppress(ConnectionClosed):  # closed before the flood ends, or after
            for _ in range(MESSAGES_PER_SECOND * 5):
                websocket.send(PING)
        assert close_code(websocket) == 4029


def test_messages_within_the_rate_are_all_answered(server: Server, headers: dict[str, str]) -> None:
    with open_socket(server, headers) as websocket:
        for _ in range(MESSAGES_PER_SECOND):
            assert_open(websocket)
            time.sleep(1.5 / MESSAGES_PER_SECOND)


def test_subscribe_is_answered_before_any_event_and_unsubscribe_after_the_last(
    server: Server, headers: dict[str, str]
) -> None:
    writer_headers = register_and_log_in(server.url, f"ws{next(_users)}")
    stop = threading.Event()

    def write_all_along() -> None:
        items = [{"name": "racing"}] * 20
        while not stop.is_set():
            httpx.post(f"{server.url}/api/v1/resources/bulk", json=items, headers=writer_headers)

    writer = threading.Thread(target=write_all_along)
    writer.start()
    try:
        with open_socket(server, headers) as websocket:
            for _ in range(8):  # within the message budget
                websocket.send(SUBSCRIBE)
                assert json.loads(websocket.recv(timeout=5))["type"] == "subscribed"
                assert json.loads(websocket.recv(timeout=5))["type"] == "resource.created"
                websocket.send(UNSUBSCRIBE)
                while (frame := json.loads(websocket.recv(timeout=5)))["type"] != "unsubscribed":
                    assert frame["type"] == "resource.created"
    finally:
        stop.set()
        writer.join(10)


def test_a_user_gets_only_so_many_sockets(server: Server, headers: dict[str, str]) -> None:
    with open_socket(server, headers) as first, open_socket(server, headers) as second:
        with open_socket(server, headers) as third:
            assert close_code(third) == 4029
        assert_open(first)
        assert_open(second)
        other = register_and_log_in(server.url, f"ws{next(_users)}")
        with open_socket(server, other) as someone_else:
            assert_open(someone_else)
    with open_socket(server, headers) as again:  # the count goes down as sockets close
        assert_open(again)


def test_a_socket_is_closed_with_4001_when_its_token_expires(
    server: Server, headers: dict[str, str]
) -> None:
    me = httpx.get(f"{server.url}/api/v1/users/me", headers=headers).json()
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    claims = {
        "sub": me["email"],
        "iat": datetime.now(UTC).timestamp(),
        "exp": expires,
        **{"iss": "resource-api", "aud": "resource-api", "jti": "short", "sid": "short"},
    }
    short = {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}
    with open_socket(server, short) as websocket:
        websocket.send(SUBSCRIBE)
        assert json.loads(websocket.recv(timeout=5))["type"] == "subscribed"
        assert close_code(websocket, within=5) == 4001
    assert datetime.now(UTC) >= expires.replace(microsecond=0)  # `exp` is in whole seconds


@pytest.mark.parametrize(
    "statement",
    ["UPDATE users SET is_active = 0 WHERE email = ?", "DELETE FROM users WHERE email = ?"],
    ids=["deactivated", "deleted"],
)
def test_a_socket_is_closed_with_4003_when_its_user_goes(
    server: Server, headers: dict[str, str], database: Path, statement: str
) -> None:
    email = httpx.get(f"{server.url}/api/v1/users/me", headers=headers).json()["email"]
    with open_socket(server, headers) as websocket:
        assert_open(websocket)
        with sqlite3.connect(database) as db:
            db.execute(statement, (email,))
        assert close_code(websocket) == 4003


@pytest.mark.parametrize("ending", ["logout", "logout-everywhere"])
def test_a_socket_is_closed_with_4003_when_its_login_ends(
    server: Server, headers: dict[str, str], ending: str
) -> None:
    with open_socket(server, headers) as websocket:
        assert_open(websocket)
        ended = httpx.post(f"{server.url}/api/v1/auth/{ending}", headers=headers)
        assert ended.status_code == 204
        assert close_code(websocket) == 4003


def never_reading_subscriber(server: Server, headers: dict[str, str]) -> socket.socket:
    """A raw WebSocket that subscribes and then reads nothing at all, with a tiny buffer."""
    sock = raw_websocket(server, headers, receive_buffer=4096)
    mask = os.urandom(4)
    payload = SUBSCRIBE.encode()
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


def live_subscribers(server: Server, headers: dict[str, str]) -> int:
    summary = httpx.get(f"{server.url}/api/v1/async-endpoint", headers=headers).json()
    count: int = summary["live_subscribers"]
    return count


def test_a_subscriber_that_never_reads_is_dropped_and_memory_stays_bounded(
    server: Server, headers: dict[str, str]
) -> None:
    heard: list[int] = []
    honest_ready = threading.Event()

    def honest_reader() -> None:
        with open_socket(server, headers) as websocket:
            websocket.send(SUBSCRIBE)
            websocket.recv(timeout=5)
            honest_ready.set()
            with contextlib.suppress(TimeoutError):
                while True:
                    heard.append(json.loads(websocket.recv(timeout=5))["data"]["id"])

    reader = threading.Thread(target=honest_reader)
    reader.start()
    assert honest_ready.wait(10)
    with never_reading_subscriber(server, register_and_log_in(server.url, f"ws{next(_users)}")):
        time.sleep(0.3)
        assert live_subscribers(server, headers) == 2
        before = server_rss_mib(server.pid)
        # 8 MB of events, in bursts an honest reader keeps up with (one of 1000 would not).
        items = [{"name": f"item {i}", "description": "d" * 900} for i in range(200)]
        created = 0
        for _ in range(40):
            bulk = httpx.post(f"{server.url}/api/v1/resources/bulk", json=items, headers=headers)
            assert bulk.status_code == 201
            created += len(bulk.json())
        reader.join(30)

        assert len(heard) == created  # the honest subscriber heard everything
        assert live_subscribers(server, headers) == 0  # both gone: the slow one was dropped
        assert server_rss_mib(server.pid) - before < 100
