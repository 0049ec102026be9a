"""Unforeseen errors are JSON naming the request; every answer carries its request id."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.services import resources
from tests.problems import assert_problem


@pytest.fixture
def fragile_client(app_with_test_session: FastAPI, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    def broken(*_args: object) -> None:
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr(resources, "page", broken)
    return TestClient(app_with_test_session, raise_server_exceptions=False)


def test_an_unhandled_error_is_a_json_500_with_the_request_id(fragile_client: TestClient) -> None:
    with fragile_client:
        response = fragile_client.get("/api/v1/resources")
    body = assert_problem(response, 500, "Internal server error")
    assert len(body["request_id"]) == 32
    assert "a bug nobody foresaw" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_sane_client_request_id_is_kept(fragile_client: TestClient) -> None:
    with fragile_client:
        response = fragile_client.get("/api/v1/resources", headers={"X-Request-ID": "abc-123.x"})
    assert response.json()["request_id"] == "abc-123.x"


@pytest.mark.parametrize("given", ["", "a b", "x" * 129, "<script>", 'a"b'])
def test_an_insane_client_request_id_is_replaced(client: TestClient, given: str) -> None:
    response = client.get("/health", headers={"X-Request-ID": given})
    assert response.headers["x-request-id"] != given
    assert len(response.headers["x-request-id"]) == 32


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    for path in ("/health", "/api/v1/resources", "/api/v1/resources/999", "/nowhere"):
        assert client.get(path).headers["x-request-id"]
