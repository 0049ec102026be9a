import gc

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import migrations
from app.connection_gate import ConnectionGate, ConnectionsExhausted
from tests.conftest import StateSetter
from tests.problems import assert_problem


def test_health_answers_without_the_database(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_start_up_leaves_its_objects_out_of_the_collector(client: TestClient) -> None:
    """The server's first lifespan freezes what start-up made (a full collection then walks
    only what requests make); `client` has run it."""
    assert client.get("/health").status_code == 200
    assert gc.get_freeze_count() > 0


def test_ready_when_the_database_answers(client: TestClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "events_lost": 0,
    }


def test_not_ready_when_the_database_fails(
    client: TestClient, db_session: Session, monkeypatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(db_session, "execute", broken)
    response = client.get("/ready")
    assert_problem(response, 503, "Database unavailable")


def test_not_ready_when_the_schema_is_behind_the_code(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "HEAD_REVISIONS", frozenset({"a-newer-revision"}))
    response = client.get("/ready")
    assert_problem(response, 503, "Database schema is behind the code: run resource-api migrate")


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/v1/resources" in schema["paths"]


def test_a_full_connection_gate_answers_503_with_retry_after(
    client: TestClient, set_app_state: StateSetter
) -> None:
    set_app_state("connection_gate", ConnectionGate(capacity=0, timeout=0.05))

    response = client.get("/api/v1/resources")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert_problem(response, 503, "Database busy; retry shortly")
    assert client.get("/health").status_code == 200  # no database, no gate


def test_the_gate_admits_up_to_its_capacity() -> None:
    gate = ConnectionGate(capacity=2, timeout=0.05)

    async def hold_two_then_try_a_third() -> None:
        async with gate.slot(), gate.slot():
            assert gate.in_use == 2
            with pytest.raises(ConnectionsExhausted):
                async with gate.slot():
                    pass
        assert gate.in_use == 0

    anyio.run(hold_two_then_try_a_third)
