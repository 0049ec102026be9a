"""The server's own limits, met over raw sockets as an attacker would meet them."""

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import (
    Server,
    open_socket,
    register_and_log_in,
    run_cli,
    running_server,
    server_env,
)

MAX_CONNECTIONS = 6
HEADER_TIMEOUT = 1.0
KEEP_ALIVE_TIMEOUT = 1
MAX_HEADER_BYTES = 8 * 1024
SIMPLE_GET = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
# An upload that never finishes: its connection is busy with a request.
STALLED_UPLOAD = b"POST /api/v1/users HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data_dir = tmp_path_factory.mktemp("limits")
    env = server_env(
        data_dir,
        f"sqlite:///{data_dir}/limits.db",
        MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        KEEP_ALIVE_TIMEOUT=str(KEEP_ALIVE_TIMEOUT),
        MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
        SHUTDOWN_TIMEOUT="2",
    )
    assert run_cli(env, "migrate").returncode == 0
    return env


@pytest.fixture(scope="module")
def server(env: dict[str, str]) -> Iterator[Server]:
    with running_server(env) as server:
        yield server


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response (status, headers, body); the server closes or sends a length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def assert_json_answer(sock: socket.socket, status: int) -> None:
    got, headers, body = read_response(sock)
    assert got == status, body
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["detail"]


def health_latency(server: Server) -> float:
    started = time.monotonic()
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    return time.monotonic() - started


@pytest.mark.parametrize("sent_whole", [True, False], ids=["whole", "in-pieces"])
def test_a_header_block_over_the_cap_gets_431(server: Server, sent_whole: bool) -> None:
    request = SIMPLE_GET[:-2] + b"X-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n"
    with connect(server) as sock:
        if sent_whole:
            sock.sendall(request)
        else:
            for start in range(0, len(request), 1000):
                sock.sendall(request[start : start + 1000])
                time.sleep(0.005)
        assert_json_answer(sock, 431)


def test_many_small_headers_count_towards_the_cap(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(SIMPLE_GET[:-2] + b"X-A: b\r\n" * 2000 + b"\r\n")
        assert_json_answer(sock, 431)


def test_a_header_block_under_the_cap_is_served(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(SIMPLE_GET[:-2] + b"X-Big: " + b"a" * (MAX_HEADER_BYTES // 2) + b"\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_an_endless_streamed_header_is_cut_and_others_are_served(server: Server) -> None:
    with connect(server) as attacker:
        attacker.sendall(SIMPLE_GET[:-2] + b"X-Endless: ")
        cut = False
        for _ in range(200):
            try:
                attacker.sendall(b"a" * 512)
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            assert health_latency(server) < 0.5
        assert cut or closed_by_server(attacker)


def test_garbage_gets_a_json_400(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert_json_answer(sock, 400)


def test_a_head_not_finished_in_time_gets_408(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        assert_json_answer(sock, 408)
        assert HEADER_TIMEOUT * 0.8 < time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_slow_head_finished_in_time_is_served(server: Server) -> None:
    with connect(server) as sock:
        for byte in SIMPLE_GET:
            sock.sendall(bytes([byte]))
            time.sleep(HEADER_TIMEOUT / len(SIMPLE_GET) / 2)
        assert read_response(sock)[0] == 200


def test_a_kept_alive_connection_gets_a_head_deadline_too(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(SIMPLE_GET)
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the next head, never finished
        assert_json_answer(sock, 408)


def test_an_idle_kept_alive_connection_is_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(SIMPLE_GET)
        assert read_response(sock)[0] == 200
        sock.sendall(SIMPLE_GET)  # reused within the timeout: served
        assert read_response(sock)[0] == 200
        started = time.monotonic()
        assert closed_by_server(sock)
        assert time.monotonic() - started < KEEP_ALIVE_TIMEOUT + 2


def test_at_the_cap_a_new_client_evicts_the_longest_waiting_connection(server: Server) -> None:
    idle = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        with connect(server) as honest:
            honest.sendall(SIMPLE_GET)
            assert read_response(honest)[0] == 200
        assert closed_by_server(idle[0])  # the longest waiting was let go
    finally:
        for sock in idle:
            sock.close()


def test_at_the_cap_an_open_websocket_is_never_the_one_evicted(server: Server) -> None:
    headers = register_and_log_in(server.url, "evicting")
    with open_socket(server, headers) as websocket:
        time.sleep(0.2)  # it has waited longest of all that follow
        idle = [connect(server) for _ in range(MAX_CONNECTIONS + 1)]
        try:
            time.sleep(0.2)
            websocket.send(json.dumps({"type": "ping"}))
            assert json.loads(websocket.recv(timeout=5)) == {"type": "pong"}
            assert closed_by_server(idle[0])  # an idle one went instead
        finally:
            for sock in idle:
                sock.close()


def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503(server: Server) -> None:
    busy = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in busy:
            sock.sendall(STALLED_UPLOAD)  # busy, so none may be evicted
        time.sleep(0.3)
        with connect(server) as refused:
            assert_json_answer(refused, 503)
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.3)
    assert health_latency(server) < 1  # served again once they are gone


def test_a_stalled_upload_cannot_hold_off_shutdown(env: dict[str, str]) -> None:
    with running_server(env) as server, connect(server) as sock:
        sock.sendall(STALLED_UPLOAD)
        time.sleep(0.3)
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        while not has_exited(server.pid) and time.monotonic() - started < 15:
            time.sleep(0.1)
        assert time.monotonic() - started < 2 + 3  # SHUTDOWN_TIMEOUT and a margin


def has_exited(pid: int) -> bool:
    """True once the process is gone or a zombie (exited, not yet reaped by its parent)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status
