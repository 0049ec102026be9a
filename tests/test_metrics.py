"""`/metrics`: what an operator scrapes. The numbers are global to the process, so each test
reads what changed while it ran. Several workers summed: test_redis_broker (it needs Redis)."""

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.connection_gate import ConnectionGate, ConnectionsExhausted
from app.events.broker import InProcessBroker
from app.events.types import Event
from app.main import create_app
from app.settings import get_settings
from tests.problems import assert_problem
from tests.scraping import growth, sample, scrape

URL = "/api/v1/resources"
TEMPLATE = "/api/v1/resources/{resource_id}"


def requests_grew(before: str, after: str, method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return growth(before, after)("http_requests_total", **labels)


def gauge(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_requests_are_counted_by_route_template_and_status(
    client: TestClient, auth_headers: dict
) -> None:
    before = scrape(client)
    created = client.post(URL, json={"name": "Lamp"}, headers=auth_headers).json()
    for _ in range(2):
        client.get(f"{URL}/{created['id']}", headers=auth_headers)
    client.get(f"{URL}/{created['id'] + 1000}", headers=auth_headers)
    client.head(f"{URL}/{created['id']}", headers=auth_headers)
    client.get("/health")
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    after = scrape(client)

    def grew(method: str, route: str, status: str) -> float:
        return requests_grew(before, after, method, route, status)

    assert grew("POST", URL, "201") == 1
    assert grew("GET", TEMPLATE, "200") == 2  # one series for every id
    assert grew("GET", TEMPLATE, "404") == 1
    assert grew("HEAD", TEMPLATE, "200") == 1  # HEAD keeps its name and finds its route
    assert grew("GET", "/health", "200") == 1
    assert grew("GET", "/docs/assets/{path}", "200") == 1  # a mounted app's files
    latency = "http_request_duration_seconds_count"
    labels = {"method": "GET", "route": TEMPLATE, "status": "200"}
    assert growth(before, after)(latency, **labels) == 2
    assert sample(after, "http_request_duration_seconds_sum", **labels) > 0


def test_what_a_client_makes_up_never_becomes_a_label(client: TestClient) -> None:
    """Unknown paths and methods share one series each: a scanner cannot grow the scrape."""
    before = scrape(client)
    for path in ("/wp-admin", "/.env", "/a/b/c"):
        assert_problem(client.get(path), 404)
    client.request("BREW", "/health")
    after = scrape(client)
    assert "/wp-admin" not in after
    assert "BREW" not in after
    assert requests_grew(before, after, "GET", "unmatched", "404") == 3
    assert requests_grew(before, after, "other", "/health", "405") == 1


def test_refusals_made_before_routing_are_counted(client: TestClient) -> None:
    too_large = get_settings().max_body_bytes + 1
    before = scrape(client)
    response = client.post(
        URL, content=b"x" * too_large, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413)
    assert requests_grew(before, scrape(client), "POST", "unmatched", "413") == 1


def test_the_scrape_speaks_prometheus_text_or_openmetrics(client: TestClient) -> None:
    plain = client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE http_requests_total counter" in plain.text
    assert "# TYPE db_connections_in_use gauge" in plain.text
    assert "process_resident_memory_bytes" in plain.text  # the process itself, too
    open_metrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")


def test_metrics_are_not_in_the_api_document(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


@pytest.fixture
def app_with(request: pytest.FixtureRequest) -> FastAPI:
    return create_app(get_settings().model_copy(update=request.param))


@pytest.mark.parametrize("app_with", [{"metrics_enabled": False}], indirect=True)
def test_a_setting_turns_metrics_off(app_with: FastAPI) -> None:
    with TestClient(app_with) as client:
        assert_problem(client.get("/metrics"), 404)
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("app_with", [{"metrics_token": "scrape-me-please"}], indirect=True)
def test_a_metrics_token_keeps_the_numbers_for_its_holder(app_with: FastAPI) -> None:
    with TestClient(app_with) as client:
        assert_problem(client.get("/metrics"), 401, "Metrics need the metrics token")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-not"})
        assert_problem(wrong, 401)
        assert wrong.headers["www-authenticate"] == "Bearer"
        right = scrape(client, Authorization="Bearer scrape-me-please")
        assert "http_requests_total" in right


@pytest.mark.asyncio
async def test_connections_in_use_and_waiting_are_gauged() -> None:
    gate = ConnectionGate(capacity=1, timeout=0.3)
    in_use, waiting = gauge("db_connections_in_use"), gauge("db_connections_waiting")
    async with gate.slot():
        assert gauge("db_connections_in_use") == in_use + 1
        queued = asyncio.create_task(gate.slot().__aenter__())
        await asyncio.sleep(0.05)
        assert gauge("db_connections_waiting") == waiting + 1
        with pytest.raises(ConnectionsExhausted):  # it gave up: no longer waiting
            await queued
        assert gauge("db_connections_waiting") == waiting
    assert gauge("db_connections_in_use") == in_use


@pytest.mark.asyncio
async def test_subscribers_are_gauged_and_overflowed_events_counted_as_lost() -> None:
    broker = InProcessBroker(max_pending=3)
    subscribers = gauge("live_subscribers")
    lost_before = (
        REGISTRY.get_sample_value("events_lost_total", {"reason": "subscriber_overflow"}) or 0.0
    )
    async with broker.subscribe():
        assert gauge("live_subscribers") == subscribers + 1
        event = Event("resource.created", {"id": 1})
        await broker.publish([event] * 2)
        await broker.publish([event] * 4)
        await asyncio.sleep(0)  # the fan-out: 3 queued, then the queue is full: 3 + 3 lost
    assert gauge("live_subscribers") == subscribers
    lost = REGISTRY.get_sample_value("events_lost_total", {"reason": "subscriber_overflow"})
    assert lost == lost_before + 6


def test_events_published_are_counted(client: TestClient, auth_headers: dict) -> None:
    before = sample(scrape(client), "events_published_total")
    created = client.post(f"{URL}/bulk", json=[{"name": "a"}, {"name": "b"}], headers=auth_headers)
    assert created.status_code == 201
    refused = client.post(URL, json={"name": ""}, headers=auth_headers)
    assert refused.status_code == 422  # nothing written, nothing announced
    assert sample(scrape(client), "events_published_total") == before + 2
