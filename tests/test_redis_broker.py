"""The Redis broker against a real Redis: across brokers, through outages, and across servers."""

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from redis.asyncio import Redis

from app.events.broker import build_broker
from app.events.redis_broker import RedisBroker
from app.events.types import Event
from tests.conftest import StateSetter
from tests.scraping import sample
from tests.servers import (
    free_port,
    register_and_log_in,
    run_cli,
    running_server,
    server_env,
    subscribed_socket,
)


@pytest.fixture
def client_without_redis(
    app_with_test_session: FastAPI, set_app_state: StateSetter
) -> Iterator[TestClient]:
    """The app, configured for a Redis that is not there."""
    set_app_state("broker", RedisBroker(f"redis://127.0.0.1:{free_port()}/0"))
    with TestClient(app_with_test_session) as client:
        yield client


EVENT = Event("resource.created", {"id": 1, "name": "Lamp"})


def unique(prefix: str) -> str:
    """Names of our own, so parallel test workers sharing one Redis never hear each other."""
    return f"{prefix}:{uuid.uuid4().hex}"


@pytest_asyncio.fixture
async def channel() -> str:
    return unique("test-updates")


async def started(broker: RedisBroker) -> RedisBroker:
    await broker.start()
    await asyncio.wait_for(broker.wait_until_listening(), 5)
    return broker


@pytest_asyncio.fixture
async def two_brokers(redis_url: str, channel: str) -> AsyncIterator[tuple[RedisBroker, ...]]:
    """Two brokers on one channel: two server processes, as far as Redis can tell."""
    brokers = (
        await started(RedisBroker(redis_url, channel, unique("a"))),
        await started(RedisBroker(redis_url, channel, unique("b"))),
    )
    yield brokers
    for broker in brokers:
        await broker.stop()


async def kill_clients(redis_url: str, client_name: str) -> int:
    """Cut a broker's connections from the Redis side, as a Redis restart would."""
    async with Redis.from_url(redis_url) as admin:
        clients = await admin.client_list()
        ids = [c["id"] for c in clients if c["name"] == client_name]
        for client_id in ids:
            await admin.client_kill_filter(_id=client_id)
        return len(ids)


@pytest.mark.asyncio
async def test_an_event_published_on_one_broker_reaches_the_other(
    two_brokers: tuple[RedisBroker, RedisBroker],
) -> None:
    writer, reader = two_brokers
    async with reader.subscribe() as subscription:
        await writer.publish([EVENT])
        assert await asyncio.wait_for(subscription.next(), 5) == EVENT


@pytest.mark.asyncio
async def test_the_publishers_own_subscribers_hear_it_once(
    two_brokers: tuple[RedisBroker, RedisBroker],
) -> None:
    writer, _ = two_brokers
    second = Event("resource.deleted", {"id": 2})
    async with writer.subscribe() as subscription:
        await writer.publish([EVENT])
        await writer.publish([second])
        assert await asyncio.wait_for(subscription.next(), 5) == EVENT
        assert await asyncio.wait_for(subscription.next(), 5) == second


@pytest.mark.asyncio
async def test_with_redis_away_publishing_loses_events_but_does_not_fail() -> None:
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0", unique("nowhere"))
    await broker.start()
    try:
        started_at = time.monotonic()
        await broker.publish([EVENT, EVENT])
        assert time.monotonic() - started_at < 3
        assert broker.lost_events == 2
        assert not broker.connected
    finally:
        await broker.stop()


@pytest.mark.asyncio
async def test_the_listener_reconnects_after_its_connection_is_cut(
    redis_url: str, two_brokers: tuple[RedisBroker, RedisBroker]
) -> None:
    writer, reader = two_brokers
    async with reader.subscribe() as subscription:
        assert await kill_clients(redis_url, reader._client_name) >= 1
        deadline = time.monotonic() + 10
        # Keep writing until the reader is back: events sent while it was away are lost.
        while True:
            await writer.publish([EVENT])
            try:
                assert await asyncio.wait_for(subscription.next(), 0.5) == EVENT
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "the listener never came back"
        assert reader.connected


@pytest.mark.asyncio
async def test_a_malformed_message_is_ignored(
    redis_url: str, channel: str, two_brokers: tuple[RedisBroker, RedisBroker]
) -> None:
    _, reader = two_brokers
    async with reader.subscribe() as subscription, Redis.from_url(redis_url) as raw:
        await raw.publish(channel, "not json")
        await raw.publish(channel, json.dumps([{"type": "resource.created", "data": {"id": 9}}]))
        assert (await asyncio.wait_for(subscription.next(), 5)).data == {"id": 9}


@pytest.mark.asyncio
async def test_build_broker_picks_redis_for_a_redis_url(redis_url: str) -> None:
    assert isinstance(build_broker(redis_url, "any"), RedisBroker)


def _receive(websocket, timeout: float = 10) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(websocket.recv(timeout=timeout))


@pytest.mark.asyncio
async def test_two_server_processes_share_events(
    tmp_path: Path, scratch_database_url: str, redis_url: str
) -> None:
    """Subscribe on server A, write through server B, hear it on A; then cut A's Redis link."""
    env = server_env(
        tmp_path,
        scratch_database_url,
        BROKER_URL=redis_url,
        BROKER_CHANNEL=unique("two-servers"),
        SECRET_KEY="k" * 48,  # both servers must accept each other's tokens
    )
    assert run_cli(env, "migrate").returncode == 0

    with running_server(env) as server_a, running_server(env) as server_b:
        headers = register_and_log_in(server_b.url, "writer")

        def write(name: str) -> dict:
            url = f"{server_b.url}/api/v1/resources"
            created = httpx.post(url, json={"name": name}, headers=headers)
            assert created.status_code == 201
            return created.json()

        with subscribed_socket(server_a, headers) as websocket:
            created = write("Across")
            assert _receive(websocket) == {
                "type": "resource.created",
                "channel": "updates",
                "data": created,
            }

            # Cut server A's link to Redis; it must come back by itself.
            assert await kill_clients(redis_url, f"resource-api-{server_a.pid}") >= 1
            deadline = time.monotonic() + 15
            while True:
                created = write("After the cut")
                try:
                    event = _receive(websocket, timeout=0.5)
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, "server A never heard Redis again"
            assert event["data"] == created
            assert httpx.get(f"{server_a.url}/ready").json()["broker"] == "ok"


def test_writes_succeed_with_redis_away(
    client_without_redis: TestClient, auth_headers: dict
) -> None:
    response = client_without_redis.post(
        "/api/v1/resources", json={"name": "Still stored"}, headers=auth_headers
    )

    assert response.status_code == 201
    assert client_without_redis.get(f"/api/v1/resources/{response.json()['id']}").status_code == 200
    ready = client_without_redis.get("/ready").json()
    assert ready["broker"] == "unavailable"
    assert ready["events_lost"] == 1


def test_serve_with_several_workers_shares_events(
    tmp_path: Path, scratch_database_url: str, redis_url: str
) -> None:
    """`serve --workers 2`: whichever worker takes a write, the subscriber hears it."""
    env = server_env(
        tmp_path, scratch_database_url, BROKER_URL=redis_url, BROKER_CHANNEL=unique("workers")
    )
    assert run_cli(env, "migrate").returncode == 0
    with running_server(env, "--workers", "2") as server:
        headers = register_and_log_in(server.url, "busy")
        with subscribed_socket(server, headers) as websocket:
            created = [
                httpx.post(  # a new connection each time, so both workers take some
                    f"{server.url}/api/v1/resources", json={"name": f"n{i}"}, headers=headers
                ).json()
                for i in range(6)
            ]
            heard = [_receive(websocket)["data"] for _ in created]
        assert heard == created


# The labels of the resource creations that http_requests_total counts.
CREATIONS = {"method": "POST", "route": "/api/v1/resources", "status": "201"}


def _posts_counted(directory: Path) -> dict[str, float]:
    """The resource creations each worker counted, read from its own file."""
    counted = {}
    for worker_file in directory.glob("counter_*.db"):
        alone = directory / "one-worker" / worker_file.stem
        alone.mkdir(parents=True)
        shutil.copy(worker_file, alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        created = registry.get_sample_value("http_requests_total", CREATIONS)
        counted[worker_file.stem] = created or 0
        shutil.rmtree(alone)
    return counted


def test_serve_with_several_workers_scrapes_the_sum_of_their_metrics(
    tmp_path: Path, scratch_database_url: str, redis_url: str
) -> None:
    """Whichever worker answers the scrape, it reports what all of them counted."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"from a server that ran before")  # emptied first
    env = server_env(
        tmp_path,
        scratch_database_url,
        BROKER_URL=redis_url,
        BROKER_CHANNEL=unique("metrics"),
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    assert run_cli(env, "migrate").returncode == 0
    with running_server(env, "--workers", "2") as server:
        headers = register_and_log_in(server.url, "counted")
        with subscribed_socket(server, headers):  # the one live_subscribers must count
            created = 0
            # A new connection each time, until both workers have taken some (bounded).
            while created < 60 and (created < 4 or 0 in _posts_counted(directory).values()):
                url = f"{server.url}/api/v1/resources"
                assert httpx.post(url, json={"name": "n"}, headers=headers).status_code == 201
                created += 1
            assert len(_posts_counted(directory)) == 2
            assert 0 not in _posts_counted(directory).values(), "one worker took every request"
            for _ in range(4):  # new connections: both workers answer some scrapes
                scraped = httpx.get(f"{server.url}/metrics").text
                assert sample(scraped, "http_requests_total", **CREATIONS) == created
                assert sample(scraped, "events_published_total") == created
                assert sample(scraped, "live_subscribers") == 1
    assert not (directory / "counter_1.db").exists()


EPHEMERAL_REDIS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


class RedisServer:
    """A Redis of the test's own, on a free port, that it may stop and start again."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), *EPHEMERAL_REDIS],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed: CI must run the Redis restart test")
        pytest.skip("redis-server is not installed")
    server = RedisServer(binary)
    server.start()
    yield server
    server.stop()


@pytest.mark.asyncio
async def test_the_first_publish_after_a_redis_restart_goes_through(
    own_redis: RedisServer,
) -> None:
    broker = await started(RedisBroker(own_redis.url, unique("restart"), unique("r")))
    try:
        async with broker.subscribe() as subscription:
            await broker.publish([EVENT])  # leaves a pooled connection, dead after the restart
            assert await asyncio.wait_for(subscription.next(), 5) == EVENT
            own_redis.stop()
            own_redis.start()
            await asyncio.sleep(0.5)  # the listener notices, and reconnects
            await asyncio.wait_for(broker.wait_until_listening(), 10)

            await broker.publish([EVENT])

            assert await asyncio.wait_for(subscription.next(), 5) == EVENT
            assert broker.lost_events == 0
    finally:
        await broker.stop()
