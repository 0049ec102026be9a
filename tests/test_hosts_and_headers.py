"""Hosts the API answers for, headers it never builds from the client's Host, the security
headers on every answer, and HEAD for every GET."""

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.api.docs import DOCS_URL, REDOC_URL
from app.main import create_app
from app.models import User
from app.settings import get_settings
from tests.conftest import PASSWORD
from tests.problems import assert_problem

URL = "/api/v1/resources"


@pytest.fixture
def strict_app() -> FastAPI:
    settings = get_settings().model_copy(
        update={"allowed_hosts": ["api.example.com", ".example.org", "[::1]"]}
    )
    return create_app(settings)


@pytest.mark.parametrize(
    "host",
    ["api.example.com", "API.example.com:8443", "example.org", "deep.sub.example.org", "[::1]:80"],
)
def test_allowed_hosts_are_served(strict_app: FastAPI, host: str) -> None:
    with TestClient(strict_app) as client:
        assert client.get("/health", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "api.example.com.evil.example", "notexample.org", "", "[::2]"]
)
def test_other_hosts_get_a_json_400(strict_app: FastAPI, host: str) -> None:
    with TestClient(strict_app) as client:
        response = client.get("/health", headers={"Host": host})
    assert_problem(response, 400, "Invalid host header")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_websocket_for_another_host_is_refused(strict_app: FastAPI) -> None:
    with (
        TestClient(strict_app) as client,
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws/updates", headers={"Host": "evil.example"}),
    ):
        pass
    assert refused.value.code == 1008


def test_location_and_link_never_name_the_clients_host(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    spoofed = {**auth_headers, "Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    created = client.post(URL, json={"name": "x"}, headers=spoofed)
    listed = client.get(f"{URL}?limit=1", headers=spoofed)
    assert created.headers["location"] == f"{URL}/{created.json()['id']}"
    assert "evil" not in listed.headers["link"]
    assert listed.headers["link"].startswith(f"<{URL}?")


@pytest.mark.parametrize("path", ["/health", URL, f"{URL}/999999", "/openapi.json"])
def test_every_answer_carries_the_security_headers(client: TestClient, path: str) -> None:
    headers = client.get(path).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "strict-transport-security" not in headers  # plain HTTP


def test_the_docs_pages_get_a_policy_their_scripts_run_under(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        policy = client.get(path).headers["content-security-policy"]
        assert "script-src 'self' 'unsafe-inline';" in policy  # the app's own scripts only
        assert "frame-ancestors 'none'" in policy
        assert "http" not in policy


def test_hsts_only_over_https(fastapi_app: FastAPI) -> None:
    with TestClient(fastapi_app, base_url="https://testserver") as client:
        headers = client.get("/health").headers
    assert headers["strict-transport-security"].startswith("max-age=")


def test_token_answers_are_never_cached(client: TestClient, user: User) -> None:
    response = client.post(
        "/api/v1/auth/token", data={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


def get_routes(app: Any) -> list[str]:
    """Every GET route without path parameters: the API's, and the docs pages'."""
    documented = [
        path for path, operations in app.openapi()["paths"].items() if "get" in operations
    ]
    pages = [app.openapi_url, DOCS_URL, REDOC_URL]
    return [path for path in documented + pages if "{" not in path]


def test_head_is_answered_for_every_get_route(
    client: TestClient, fastapi_app: FastAPI, auth_headers: dict[str, str]
) -> None:
    paths = get_routes(fastapi_app)
    assert {"/health", URL, "/api/v1/users/me", "/openapi.json", "/docs"} <= set(paths)
    for path in paths:
        got = client.get(path, headers=auth_headers)
        head = client.head(path, headers=auth_headers)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers["content-length"] == got.headers["content-length"], path
        assert head.headers["content-type"] == got.headers["content-type"], path


def test_head_is_refused_where_get_is(client: TestClient) -> None:
    assert client.head("/api/v1/auth/token").status_code == 405
    operations = client.app.openapi()["paths"].values()  # type: ignore[attr-defined]
    assert not any("head" in methods for methods in operations)  # not documented twice
