import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest.mock import Mock

import anyio
import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from app.services import external_api
from app.services.external_api import (
    NOT_CONFIGURED,
    ExternalClient,
    ExternalNotFound,
    SharedHttpClient,
)
from app.settings import get_settings
from tests.problems import assert_problem
from tests.servers import (
    register_and_log_in,
    run_cli,
    running_demo_upstream,
    running_server,
    server_env,
    server_rss_mib,
)

URL = "/api/v1/resources/7/external-data"
SUCCESS = {"status": "success", "data": {"colour": "teal", "stock": 3}}
MAX_REPLY = 1024 * 1024  # EXTERNAL_API_MAX_REPLY_BYTES


@pytest.fixture
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(get_settings(), "external_api_timeout", 0.3)
    return 0.3


def test_returns_the_services_data(
    client: TestClient, auth_headers: dict, external_api: respx.MockRouter
) -> None:
    route = external_api.get("/resources/7").respond(json=SUCCESS)

    response = client.get(URL, headers=auth_headers)

    assert response.status_code == 200
    assert response.json() == {"resource_id": 7, "external_data": SUCCESS["data"]}
    assert route.call_count == 1
    assert route.calls.last.request.headers["x-api-key"] == "test-api-key"


def test_requires_a_token(client: TestClient, external_api: respx.MockRouter) -> None:
    route = external_api.get("/resources/7").respond(json=SUCCESS)
    assert client.get(URL).status_code == 401
    assert not route.called


def test_a_404_from_the_service_is_a_404(
    client: TestClient, auth_headers: dict, external_api: respx.MockRouter
) -> None:
    external_api.get("/resources/7").respond(404, json={"detail": "no"})
    response = client.get(URL, headers=auth_headers)
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(500, json=SUCCESS),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(401, json={"detail": "bad key"}),
        httpx.Response(200, text="{not json"),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={"status": "error", "data": {}}),
        httpx.Response(200, json={"status": "success"}),
        httpx.Response(200, json="success"),
        # Hostile: none of these may become a 500, or be read whole.
        httpx.Response(200, content=b'{"status": "success", "data": {"x": NaN}}'),
        httpx.Response(200, content=b'{"status": "success", "data": ' + b"[" * 5000),
        httpx.Response(200, content=b'{"status": "success", "data": "\xff\xfe"}'),
        httpx.Response(200, content=b'{"status": "success", "data": ' + b"1" * (MAX_REPLY + 1)),
        httpx.Response(200, content=b'{"status": "success", "data": "' + b"a" * MAX_REPLY + b'"}'),
    ],
    ids=[
        "500",
        "502",
        "401",
        "malformed",
        "list",
        "status-error",
        "no-data",
        "string",
        "nan",
        "too-deep",
        "not-utf8",
        "huge-number",
        "over-1-mib",
    ],
)
def test_any_failure_is_a_503(
    client: TestClient, auth_headers: dict, external_api: respx.MockRouter, reply: httpx.Response
) -> None:
    external_api.get("/resources/7").mock(return_value=reply)

    response = client.get(URL, headers=auth_headers)

    assert_problem(response, 503, "Service temporarily unavailable")


@pytest.mark.parametrize(
    ("side_effect", "status", "calls"),
    [
        ([httpx.ConnectError("refused"), httpx.Response(200, json=SUCCESS)], 200, 2),
        (httpx.ConnectError("refused"), 503, 2),  # retried once, not more
        # A read timeout is not retried: the request may have reached the service.
        (httpx.ReadTimeout("slow"), 503, 1),
    ],
    ids=["connect-error-then-success", "connect-errors", "read-timeout"],
)
def test_only_connection_errors_are_retried_and_only_once(
    client: TestClient,
    auth_headers: dict,
    external_api: respx.MockRouter,
    side_effect: object,
    status: int,
    calls: int,
) -> None:
    route = external_api.get("/resources/7").mock(side_effect=side_effect)

    response = client.get(URL, headers=auth_headers)

    assert response.status_code == status
    assert route.call_count == calls


def test_a_slow_service_hits_the_overall_deadline(
    client: TestClient, auth_headers: dict, external_api: respx.MockRouter, short_deadline: float
) -> None:
    async def trickle(_request: httpx.Request) -> httpx.Response:
        async def one_byte_at_a_time():
            for byte in b'{"status": "success", "data": {}}':
                await anyio.sleep(0.1)
                yield bytes([byte])

        return httpx.Response(200, content=one_byte_at_a_time())

    external_api.get("/resources/7").mock(side_effect=trickle)

    started = time.monotonic()
    response = client.get(URL, headers=auth_headers)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert elapsed < short_deadline + 1.0  # the trickle alone would take 3.3 s


def test_without_a_configured_service_it_is_a_503_asking_nobody(
    client: TestClient,
    auth_headers: dict,
    external_api: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    route = external_api.get("/resources/7").respond(json=SUCCESS)
    monkeypatch.setattr(get_settings(), "external_api_url", "")
    assert_problem(client.get(URL, headers=auth_headers), 503, NOT_CONFIGURED)
    assert not route.called
    # A setting, not a failure: the answer says it, and the log is not filled with it.
    assert not [record for record in caplog.records if record.name == external_api.logger.name]


def test_the_demo_upstream_speaks_the_reply_contract() -> None:
    with running_demo_upstream() as upstream:
        settings = get_settings().model_copy(update={"external_api_url": upstream.url})
        reply = anyio.run(ExternalClient(settings=settings).fetch_data, 5)
        assert reply["status"] == "success"
        assert reply["data"]["resource_id"] == 5
        assert anyio.run(external_api.fetch_external_data, ExternalClient(settings=settings), 5)
        with pytest.raises(ExternalNotFound):
            anyio.run(ExternalClient(settings=settings).fetch_data, 1_000_001)


def test_the_client_works_without_a_shared_pool(external_api: respx.MockRouter) -> None:
    """`ExternalClient()` with no arguments is the documented contract."""
    external_api.get("/resources/3").respond(json=SUCCESS)
    assert anyio.run(ExternalClient().fetch_data, 3) == SUCCESS


def test_the_client_reports_a_404_distinctly(external_api: respx.MockRouter) -> None:
    external_api.get("/resources/3").respond(404)
    with pytest.raises(ExternalNotFound):
        anyio.run(ExternalClient().fetch_data, 3)


@pytest.mark.parametrize("resource_id", ["0", "-3", str(2**31), str(2**63)])
def test_impossible_ids_are_404_without_asking_the_service(
    client: TestClient, auth_headers: dict, external_api: respx.MockRouter, resource_id: str
) -> None:
    route = external_api.get(path__regex=r"^/resources/").respond(json=SUCCESS)
    response = client.get(f"/api/v1/resources/{resource_id}/external-data", headers=auth_headers)
    assert response.status_code == 404
    assert not route.called


def test_a_reply_within_the_limit_is_served(
    client: TestClient, auth_headers: dict, external_api: respx.MockRouter
) -> None:
    big = "a" * (MAX_REPLY - 100)
    external_api.get("/resources/7").respond(json={"status": "success", "data": big})
    response = client.get(URL, headers=auth_headers)
    assert response.status_code == 200
    assert response.json()["external_data"] == big


def test_an_endless_reply_is_read_only_up_to_the_limit(
    client: TestClient, auth_headers: dict, external_api: respx.MockRouter
) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"status": "success", "data": "'
        while sent < 100 * MAX_REPLY:
            sent += 65536
            yield b"a" * 65536

    external_api.get("/resources/7").mock(return_value=httpx.Response(200, content=endless()))
    assert client.get(URL, headers=auth_headers).status_code == 503
    assert sent <= MAX_REPLY + 2 * 65536


def test_a_failure_is_logged_as_one_warning_line(
    client: TestClient,
    auth_headers: dict,
    external_api: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    external_api.get("/resources/7").respond(502, text="bad gateway")
    with caplog.at_level(logging.INFO, "app.services.external_api"):
        assert client.get(URL, headers=auth_headers).status_code == 503
    [record] = [r for r in caplog.records if r.name == "app.services.external_api"]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "\n" not in record.getMessage()
    assert "answered 502" in record.getMessage()


def test_a_client_double_with_unencodable_data_is_a_503(
    client: TestClient, auth_headers: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    double = Mock()
    double.return_value.fetch_data.return_value = {"status": "success", "data": float("nan")}
    monkeypatch.setattr(external_api, "ExternalClient", double)
    assert client.get(URL, headers=auth_headers).status_code == 503


class HugeReplyService(BaseHTTPRequestHandler):
    """An upstream on loopback that answers with 200 MiB of JSON string."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        with contextlib.suppress(OSError):  # the API stops reading, as it should
            self.wfile.write(b'{"status": "success", "data": "')
            for _ in range(200):
                self.wfile.write(b"a" * MAX_REPLY)

    def log_message(self, *_args: object) -> None:
        return None


def test_a_200_mib_reply_over_real_sockets_costs_the_server_no_memory(
    tmp_path: Path, scratch_database_url: str
) -> None:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), HugeReplyService)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    env = server_env(
        tmp_path,
        scratch_database_url,
        EXTERNAL_API_URL=f"http://127.0.0.1:{upstream.server_address[1]}",
        EXTERNAL_API_TIMEOUT="20",
    )
    try:
        assert run_cli(env, "migrate").returncode == 0
        with running_server(env) as server:
            headers = register_and_log_in(server.url, "huge")
            before = server_rss_mib(server.pid)
            response = httpx.get(f"{server.url}{URL}", headers=headers, timeout=30)
            assert response.status_code == 503
            assert server_rss_mib(server.pid) - before < 30
    finally:
        upstream.shutdown()
        upstream.server_close()


@pytest.mark.asyncio
async def test_the_shared_http_client_is_one_made_on_first_use_and_closed_at_the_end() -> None:
    shared = SharedHttpClient(get_settings())
    first = shared.get()
    assert shared.get() is first  # pooled: every call shares it
    await shared.aclose()
    assert first.is_closed
    assert not shared.get().is_closed  # a later use (another lifespan) makes a new one
    await shared.aclose()
