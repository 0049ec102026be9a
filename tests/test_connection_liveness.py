"""A pooled PostgreSQL connection that the server closed is thrown away at checkout, without
a ping on every checkout (app.connection_liveness)."""

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DisconnectionError, OperationalError

from app.connection_liveness import discard_if_closed, encrypted, server_spoke
from tests.servers import register_and_log_in, run_cli, running_server, server_env


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    yield ours, peer
    ours.close()
    peer.close()


def test_a_quiet_socket_has_not_spoken(sockets: tuple[socket.socket, socket.socket]) -> None:
    assert not server_spoke(sockets[0].fileno())


def test_a_socket_with_something_to_read_has_spoken(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    sockets[1].sendall(b"E")  # PostgreSQL's ErrorResponse ("terminating connection")
    assert server_spoke(sockets[0].fileno())


def test_a_hung_up_socket_has_spoken(sockets: tuple[socket.socket, socket.socket]) -> None:
    sockets[1].close()
    assert server_spoke(sockets[0].fileno())


def _driver_url(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def terminate_other_connections(url: str) -> None:
    """What a restart or an administrator does to the pool: every other connection to the
    database closed by the server; returns once they are gone."""
    with psycopg.connect(url, autocommit=True) as admin:
        terminated = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        assert terminated
        assert terminated[0] > 0
        deadline = time.monotonic() + 10
        while admin.execute(
            "SELECT 1 FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone():
            assert time.monotonic() < deadline, "the terminated connections stayed"
            time.sleep(0.02)


def _query_after_termination(engine: Engine) -> int:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))  # one connection, back in the pool
    terminate_other_connections(_driver_url(engine))
    time.sleep(0.05)  # the server's goodbye crosses loopback
    with engine.connect() as connection:
        return int(connection.scalar(text("SELECT 2")) or 0)


def test_a_connection_the_server_closed_is_replaced(postgres_engine: Engine) -> None:
    assert _query_after_termination(postgres_engine) == 2


def test_without_the_check_the_closed_connection_fails_the_query(
    postgres_engine: Engine,
) -> None:
    """What the check spares a request: the same pool with neither it nor a ping."""
    bare = create_engine(postgres_engine.url)
    try:
        with pytest.raises(OperationalError):
            _query_after_termination(bare)
    finally:
        bare.dispose()


def test_a_server_answers_the_first_requests_after_its_connections_were_closed(
    tmp_path: Path, postgres_engine: Engine
) -> None:
    """Over real sockets: the pool warm, every connection closed by PostgreSQL (a restart, a
    failover, an administrator), then reads and a write: none fails."""
    url = postgres_engine.url.render_as_string(hide_password=False)
    env = server_env(tmp_path, url, DB_POOL_SIZE="3", DB_MAX_OVERFLOW="0")
    assert run_cli(env, "migrate").returncode == 0
    api = "/api/v1/resources"
    with running_server(env) as server, httpx.Client(base_url=server.url) as client:
        with ThreadPoolExecutor(3) as readers:  # three connections in the pool
            warm = list(readers.map(lambda _: client.get(api).status_code, range(30)))
        assert warm == [200] * 30
        terminate_other_connections(_driver_url(postgres_engine))
        time.sleep(0.05)
        assert [client.get(api).status_code for _ in range(6)] == [200] * 6
        register_and_log_in(server.url, "after-the-restart")  # a write: 201


class OverTls:
    """A real connection that says it runs over TLS (this machine's server has none), its
    socket holding bytes of a record the TLS library has not read yet (`socket`)."""

    def __init__(self, connection: psycopg.Connection, socket_with_a_record: socket.socket) -> None:
        self._connection = connection
        self._socket = socket_with_a_record
        self.pgconn = SimpleNamespace(ssl_in_use=True)

    def fileno(self) -> int:
        return self._socket.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


@pytest.fixture
def pooled(postgres_engine: Engine) -> Iterator[psycopg.Connection]:
    """A driver connection at rest, as the pool keeps one."""
    with psycopg.connect(_driver_url(postgres_engine)) as connection:
        connection.execute("SELECT 1")
        connection.rollback()
        yield connection


def test_a_connection_over_tls_is_pinged_not_polled(
    postgres_engine: Engine,
    pooled: psycopg.Connection,
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    """Over TLS the socket proves nothing either way (a record may wait there for the TLS
    library; the server's goodbye may sit in the library already): a ping asks instead, and
    leaves no transaction open."""
    sockets[1].sendall(b"\x17\x03\x03")  # a TLS application-data record begins
    over_tls = OverTls(pooled, sockets[0])
    assert encrypted(over_tls)
    assert not encrypted(pooled)
    discard_if_closed(over_tls)  # alive, whatever its socket holds
    assert pooled.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    terminate_other_connections(_driver_url(postgres_engine))
    with pytest.raises(DisconnectionError):
        discard_if_closed(over_tls)


def test_a_plain_connection_at_rest_is_kept_and_a_closed_one_is_not(
    postgres_engine: Engine, pooled: psycopg.Connection
) -> None:
    discard_if_closed(pooled)
    terminate_other_connections(_driver_url(postgres_engine))
    time.sleep(0.05)  # the server's goodbye crosses loopback
    with pytest.raises(DisconnectionError):
        discard_if_closed(pooled)
