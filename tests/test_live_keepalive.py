"""The server's keepalive pings on /ws/updates, over real sockets: a client that answers them
stays, one that does not is closed with 1011, and with the pings turned off nobody is pinged."""

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.servers import (
    Server,
    raw_websocket,
    register_and_log_in,
    run_cli,
    running_server,
    server_env,
)

PING_SECONDS = 0.3
PING, CLOSE = 0x89, 0x88


def keepalive_server(data_dir: Path, interval: float) -> Iterator[Server]:
    env = server_env(
        data_dir,
        f"sqlite:///{data_dir}/keepalive.db",
        WS_PING_INTERVAL_SECONDS=str(interval),
        WS_PING_TIMEOUT_SECONDS=str(PING_SECONDS),
    )
    assert run_cli(env, "migrate").returncode == 0
    with running_server(env) as server:
        yield server


@pytest.fixture(scope="module")
def pinging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from keepalive_server(tmp_path_factory.mktemp("pinging"), PING_SECONDS)


@pytest.fixture(scope="module")
def silent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from keepalive_server(tmp_path_factory.mktemp("silent"), 0)


def deaf_client(server: Server) -> socket.socket:
    """A raw WebSocket that reads but never answers a ping."""
    headers = register_and_log_in(server.url, f"deaf{os.getpid()}{time.monotonic_ns()}")
    return raw_websocket(server, headers)


def frames_for(sock: socket.socket, seconds: float) -> list[tuple[int, bytes]]:
    """The server's frames (opcode with FIN, payload) for `seconds`, or until it closes."""
    sock.settimeout(0.05)
    received, frames = b"", []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        if not chunk:
            break
        received += chunk
        while len(received) >= 2 and len(received) >= 2 + received[1]:  # short frames only
            frames.append((received[0], received[2 : 2 + received[1]]))
            received = received[2 + received[1] :]
        if frames and frames[-1][0] == CLOSE:
            break
    return frames


def test_a_client_that_answers_no_ping_is_closed_with_1011(pinging: Server) -> None:
    with deaf_client(pinging) as sock:
        frames = frames_for(sock, 10 * PING_SECONDS)
    assert [opcode for opcode, _ in frames] == [PING, CLOSE]
    assert int.from_bytes(frames[1][1][:2], "big") == 1011


def test_a_client_that_answers_pings_stays_open(pinging: Server) -> None:
    headers = register_and_log_in(pinging.url, f"alive{os.getpid()}")
    url = pinging.url.replace("http://", "ws://") + "/ws/updates"
    # websockets' client answers each ping by itself, as browsers do.
    with connect(url, additional_headers=headers, ping_interval=None) as websocket:
        time.sleep(6 * PING_SECONDS)
        websocket.send('{"type": "ping"}')
        assert websocket.recv(timeout=5) == '{"type": "pong"}'


def test_with_pings_off_a_silent_client_is_neither_pinged_nor_closed(silent: Server) -> None:
    with deaf_client(silent) as sock:
        assert frames_for(sock, 6 * PING_SECONDS) == []
