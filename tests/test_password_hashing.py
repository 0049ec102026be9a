"""Password hashing never holds a database connection, and only so many hashes run at once."""

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from app import auth
from app.connection_gate import ConnectionGate
from app.models import User
from tests.conftest import PASSWORD, StateSetter

Observation = dict[str, int]


@pytest.fixture
def hashing_observed(
    monkeypatch: pytest.MonkeyPatch, fastapi_app: Any
) -> Callable[[], list[Observation]]:
    """Record, at every hash, how many hashes run and how many connection slots are taken."""
    observed: list[Observation] = []
    running = 0
    lock = threading.Lock()

    def observing(real: Callable[..., Any]) -> Callable[..., Any]:
        def hash_work(*args: Any) -> Any:
            nonlocal running
            with lock:
                running += 1
                gate: ConnectionGate = fastapi_app.state.connection_gate
                observed.append({"running": running, "slots_taken": gate.in_use})
            try:
                time.sleep(0.1)  # long enough for the others to pile up
                return real(*args)
            finally:
                with lock:
                    running -= 1

        return hash_work

    monkeypatch.setattr(auth, "verify_password", observing(auth.verify_password))
    monkeypatch.setattr(auth, "hash_password", observing(auth.hash_password))
    return lambda: observed


def test_a_login_hashes_without_holding_a_connection(
    client: TestClient, user: User, hashing_observed: Callable[[], list[Observation]]
) -> None:
    form = {"username": user.username, "password": PASSWORD}
    assert client.post("/api/v1/auth/token", data=form).status_code == 200
    assert hashing_observed() == [{"running": 1, "slots_taken": 0}]


def test_a_registration_hashes_without_holding_a_connection(
    client: TestClient, hashing_observed: Callable[[], list[Observation]]
) -> None:
    new = {"email": "hash@example.com", "username": "hash", "password": PASSWORD}
    assert client.post("/api/v1/users", json=new).status_code == 201
    assert hashing_observed() == [{"running": 1, "slots_taken": 0}]


@pytest.mark.asyncio
async def test_concurrent_logins_hash_up_to_the_cap_while_one_connection_serves_them_all(
    async_client: httpx.AsyncClient,
    user: User,
    set_app_state: StateSetter,
    hashing_observed: Callable[[], list[Observation]],
) -> None:
    # One connection for everybody: logins that hashed while holding it would run one by one.
    set_app_state("connection_gate", ConnectionGate(1, timeout=30))
    set_app_state("password_hashing", anyio.CapacityLimiter(3))
    form = {"username": user.username, "password": PASSWORD}

    responses = await asyncio.gather(
        *(async_client.post("/api/v1/auth/token", data=form) for _ in range(8))
    )

    assert [response.status_code for response in responses] == [200] * 8
    assert max(seen["running"] for seen in hashing_observed()) == 3
