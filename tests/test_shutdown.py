"""Graceful shutdown of a real server: in-flight requests finish, WebSockets hear 1001."""

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.servers import register_and_log_in, run_cli, running_server, server_env

SLOW_SECONDS = 1.5


class SlowExternalService(BaseHTTPRequestHandler):
    """A stand-in for the external service on loopback that takes its time to answer."""

    asked = threading.Event()

    def do_GET(self) -> None:
        self.asked.set()
        time.sleep(SLOW_SECONDS)
        body = json.dumps({"status": "success", "data": {"slow": True}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def slow_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowExternalService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def env(tmp_path: Path, scratch_database_url: str, slow_service: str) -> dict[str, str]:
    env = server_env(tmp_path, scratch_database_url, EXTERNAL_API_URL=slow_service)
    assert run_cli(env, "migrate").returncode == 0
    return env


def test_websockets_are_closed_with_going_away(env: dict[str, str]) -> None:
    with running_server(env) as server:
        headers = register_and_log_in(server.url, "listener")
        ws_url = server.url.replace("http://", "ws://") + "/ws/updates"
        with connect(ws_url, additional_headers=headers) as websocket:
            websocket.send(json.dumps({"type": "subscribe", "channel": "updates"}))
            assert json.loads(websocket.recv(timeout=5))["type"] == "subscribed"

            os.kill(server.pid, signal.SIGTERM)

            with pytest.raises(ConnectionClosed) as closed:
                websocket.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001


def test_in_flight_requests_finish(env: dict[str, str]) -> None:
    with running_server(env) as server:
        headers = register_and_log_in(server.url, "patient")
        url = f"{server.url}/api/v1/resources/5/external-data"
        with ThreadPoolExecutor(1) as pool:
            SlowExternalService.asked.clear()
            in_flight = pool.submit(httpx.get, url, headers=headers, timeout=30)
            # Once the service is asked, the request is in flight inside the server.
            assert SlowExternalService.asked.wait(timeout=10)

            os.kill(server.pid, signal.SIGTERM)
            response = in_flight.result(timeout=30)

        assert response.status_code == 200
        assert response.json()["external_data"] == {"slow": True}
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/health", timeout=2)
