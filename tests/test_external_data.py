import time

import anyio
import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from app.services.external_api import ExternalClient, ExternalNotFound
from app.settings import get_settings

URL = "/api/v1/resources/7/external-data"
SUCCESS = {"status": "success", "data": {"colour": "teal", "stock": 3}}


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
    ],
    ids=["500", "502", "401", "malformed", "list", "status-error", "no-data", "string"],
)
def test_any_failure_is_a_503(
    client: TestClient, auth_headers: dict, external_api: respx.MockRouter, reply: httpx.Response
) -> None:
    external_api.get("/resources/7").mock(return_value=reply)

    response = client.get(URL, headers=auth_headers)

    assert response.status_code == 503
    assert response.json() == {"detail": "Service temporarily unavailable"}


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
