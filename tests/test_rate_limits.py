"""Rate limits: 429 with Retry-After and the IETF RateLimit fields, by address, user, account."""

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app import auth
from app.models import User
from app.rate_limits import Policies, Policy, RateLimiter, RateLimits, build_counter
from app.rate_windows import LocalWindows
from app.services import users
from tests.conftest import PASSWORD, StateSetter
from tests.servers import free_port, run_cli, running_server, server_env

UNLIMITED = Policy.parse("unlimited", "")
LimitSetter = Callable[..., None]


@pytest.fixture
def set_limits(client: TestClient, set_app_state: StateSetter) -> LimitSetter:
    """Replace the running app's limits: the named policies as given, the rest unlimited."""

    def set_policies(counter: Any = None, **notations: str) -> None:
        policies = Policies(
            **{
                field: Policy.parse(field, notations[field]) if field in notations else UNLIMITED
                for field in Policies.__dataclass_fields__
            }
        )
        limiter = RateLimiter(counter or LocalWindows())
        set_app_state("rate_limits", RateLimits(limiter, policies))

    return set_policies


def assert_limited(response: httpx.Response, policy: str) -> None:
    assert response.status_code == 429
    assert response.json()["detail"].startswith("Too many")
    assert int(response.headers["retry-after"]) >= 1
    assert f'"{policy}-' in response.headers["ratelimit-policy"]
    assert ";r=0;" in response.headers["ratelimit"]


def test_reads_per_address(client: TestClient, set_limits: LimitSetter) -> None:
    set_limits(reads_per_address="3/minute")
    remaining = []
    for _ in range(3):
        response = client.get("/api/v1/resources")
        assert response.status_code == 200
        assert response.headers["ratelimit-policy"] == '"reads_per_address-60s";q=3;w=60'
        remaining.append(response.headers["ratelimit"].split(";")[1])
    assert remaining == ["r=2", "r=1", "r=0"]

    assert_limited(client.get("/api/v1/resources"), "reads_per_address")
    assert_limited(client.get("/api/v1/resources/1"), "reads_per_address")
    with TestClient(client.app, client=("192.0.2.7", 50000)) as elsewhere:
        assert elsewhere.get("/api/v1/resources").status_code == 200  # another address


def test_health_is_never_limited(client: TestClient, set_limits: LimitSetter) -> None:
    set_limits(reads_per_address="1/minute")
    assert all(client.get("/health").status_code == 200 for _ in range(5))


def test_writes_per_user(
    client: TestClient,
    set_limits: LimitSetter,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
) -> None:
    set_limits(writes_per_user="2/minute")
    for _ in range(2):
        created = client.post("/api/v1/resources", json={"name": "x"}, headers=auth_headers)
        assert created.status_code == 201
    response = client.post("/api/v1/resources", json={"name": "x"}, headers=auth_headers)
    assert_limited(response, "writes_per_user")
    assert client.delete(created.headers["location"], headers=auth_headers).status_code == 429
    other = client.post("/api/v1/resources", json={"name": "y"}, headers=other_headers)
    assert other.status_code == 201


def test_a_write_over_the_limit_is_refused_before_any_query(
    client: TestClient,
    set_limits: LimitSetter,
    auth_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_limits(writes_per_user="1/minute")
    lookups = []
    real_lookup = users.caller_of
    monkeypatch.setattr(
        users,
        "caller_of",
        lambda session, claims: lookups.append(claims) or real_lookup(session, claims),
    )
    assert (
        client.post("/api/v1/resources", json={"name": "x"}, headers=auth_headers).status_code
        == 201
    )
    refused = client.post("/api/v1/resources", json={"name": "x"}, headers=auth_headers)
    assert_limited(refused, "writes_per_user")
    assert len(lookups) == 1  # the refused one never asked who holds its token


def test_registrations_per_address_refuse_before_hashing(
    client: TestClient, set_limits: LimitSetter, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_limits(registrations_per_address="2/hour")
    hashes = []
    real_hash = auth.hash_password
    monkeypatch.setattr(auth, "hash_password", lambda pw: hashes.append(pw) or real_hash(pw))
    for n in range(2):
        new = {"email": f"r{n}@example.com", "username": f"r{n}", "password": PASSWORD}
        assert client.post("/api/v1/users", json=new).status_code == 201
    new = {"email": "r9@example.com", "username": "r9", "password": PASSWORD}
    assert_limited(client.post("/api/v1/users", json=new), "registrations_per_address")
    assert len(hashes) == 2


def test_logins_per_address(client: TestClient, set_limits: LimitSetter, user: User) -> None:
    set_limits(login_per_address="3/minute")
    form = {"username": user.username, "password": PASSWORD}
    assert all(client.post("/api/v1/auth/token", data=form).status_code == 200 for _ in range(3))
    assert_limited(client.post("/api/v1/auth/token", data=form), "login_per_address")


def log_in(client: TestClient, login: str, password: str) -> httpx.Response:
    return client.post("/api/v1/auth/token", data={"username": login, "password": password})


def test_failed_logins_lock_the_account_out_for_longer_each_time(
    client: TestClient, set_limits: LimitSetter, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two seconds: room for two slow hashes on a loaded machine within one window.
    set_limits(login_failures_per_account="2/2seconds;3/hour")
    verified = []
    real_verify = auth.verify_password
    monkeypatch.setattr(
        auth, "verify_password", lambda *args: verified.append(1) or real_verify(*args)
    )
    # Windows start at multiples of their length, and the store weighs the hits of the window
    # before against the current one's: two failures either side of a boundary count less than
    # two. Starting at a boundary, they share one window; and the hour's must not end during
    # the test's eight seconds.
    if 3600 - time.time() % 3600 < 10:
        time.sleep(3600 - time.time() % 3600)
    time.sleep(2 - time.time() % 2)
    assert [log_in(client, user.username, "wrong").status_code for _ in range(2)] == [401, 401]

    locked = log_in(client, user.email, PASSWORD)  # the right password, by email: still locked
    assert_limited(locked, "login_failures_per_account")
    assert int(locked.headers["retry-after"]) <= 2
    assert len(verified) == 2  # a locked account is not even checked

    time.sleep(4.5)  # the short window (a sliding one: two lengths) frees; the long one is next
    assert log_in(client, user.username, "wrong").status_code == 401
    locked = log_in(client, user.username, PASSWORD)
    assert_limited(locked, "login_failures_per_account")
    assert int(locked.headers["retry-after"]) > 2


def test_a_successful_login_clears_the_failures(
    client: TestClient, set_limits: LimitSetter, user: User
) -> None:
    set_limits(login_failures_per_account="3/minute")
    for _ in range(2):
        assert log_in(client, user.username, "wrong").status_code == 401
    assert log_in(client, user.username, PASSWORD).status_code == 200
    assert [log_in(client, user.username, "wrong").status_code for _ in range(3)] == [401] * 3
    assert log_in(client, user.username, PASSWORD).status_code == 429


def test_unknown_accounts_are_limited_too(client: TestClient, set_limits: LimitSetter) -> None:
    set_limits(login_failures_per_account="2/minute")
    statuses = [log_in(client, "nobody@example.com", "wrong").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


def test_a_store_that_fails_lets_requests_through(
    client: TestClient, set_limits: LimitSetter, caplog: pytest.LogCaptureFixture
) -> None:
    set_limits(
        counter=build_counter(f"redis://127.0.0.1:{free_port()}/0", "x"),
        reads_per_address="1/minute",
    )
    with caplog.at_level(logging.WARNING, "app.rate_limits"):
        assert [client.get("/api/v1/resources").status_code for _ in range(3)] == [200] * 3
    assert "rate limit store unavailable" in caplog.text


def test_limits_can_be_turned_off(client: TestClient, set_app_state: StateSetter) -> None:
    set_app_state(
        "rate_limits",
        RateLimits.from_settings(
            client.app.state.settings.model_copy(update={"rate_limits_enabled": False})
        ),
    )
    assert client.app.state.rate_limits is None
    assert "ratelimit" not in client.get("/api/v1/resources").headers


# -- over real sockets: the address a limit counts is the peer's, or a trusted proxy's word --


@pytest.fixture
def limited_env(tmp_path: Path) -> dict[str, str]:
    env = server_env(
        tmp_path,
        f"sqlite:///{tmp_path}/limits.db",
        RATE_LIMIT_READS_PER_ADDRESS="2/minute",
        RATE_LIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}",
    )
    assert run_cli(env, "migrate").returncode == 0
    return env


def reads_from(base: str, forwarded_for: str) -> int:
    response = httpx.get(f"{base}/api/v1/resources", headers={"X-Forwarded-For": forwarded_for})
    return response.status_code


def test_forwarded_addresses_are_ignored_from_an_untrusted_peer(
    limited_env: dict[str, str],
) -> None:
    with running_server(limited_env) as server:
        statuses = [reads_from(server.url, f"198.51.100.{n}") for n in range(3)]
    assert statuses == [200, 200, 429]  # one peer, whatever it claims


def test_forwarded_addresses_count_from_a_trusted_proxy(limited_env: dict[str, str]) -> None:
    with running_server({**limited_env, "TRUSTED_PROXIES": "127.0.0.1"}) as server:
        statuses = [reads_from(server.url, f"198.51.100.{n}") for n in range(3)]
        assert statuses == [200, 200, 200]  # three clients behind the proxy
        assert [reads_from(server.url, "198.51.100.9") for _ in range(3)] == [200, 200, 429]


def test_limits_in_redis_hold_across_servers(limited_env: dict[str, str], redis_url: str) -> None:
    env = {**limited_env, "RATE_LIMIT_STORAGE_URL": redis_url}
    with running_server(env) as first, running_server(env) as second:
        statuses = [reads_from(server.url, "") for server in (first, second, first)]
    assert statuses == [200, 200, 429]
