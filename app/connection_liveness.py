"""A pooled PostgreSQL connection's liveness, told without a round trip.

SQLAlchemy's `pool_pre_ping` sends `SELECT 1` on every checkout: a round trip, a thread
waiting on it, a fifth of a read's CPU. A connection that sits in the pool has nothing to
say: everything it was sent has been answered. So if its socket has anything to read, or is
hung up, the server has spoken out of turn, and what PostgreSQL says then is that it closed
the connection (a restart, `pg_terminate_backend`, an idle timeout, a failover). One
`poll()` with no wait tells that; such a connection is thrown away and the pool takes
another, as a failed ping would.

Over TLS a poll proves nothing (the TLS library may already hold the server's last words,
read off the socket with an earlier record), so an encrypted connection is pinged as
before. What neither can tell is a connection that dies between the checkout and its first
statement; that request fails (503) and the pool starts afresh, as before.
"""

import select
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

# Drivers whose connections expose their socket (`fileno()`).
SOCKET_DRIVERS = frozenset({"psycopg", "psycopg2"})


def server_spoke(fileno: int) -> bool:
    """Whether a socket has something to read or is hung up, without waiting."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, broken = select.select([fileno], [], [fileno], 0)  # Windows
    return bool(readable or broken)


def check_sockets_on_checkout(engine: Engine) -> None:
    """Throw away, on checkout, a pooled connection whose server has closed it."""
    event.listen(engine, "checkout", discard_if_closed)


def discard_if_closed(dbapi_connection: Any, _record: Any = None, _proxy: Any = None) -> None:
    """The checkout listener: `DisconnectionError` (the pool then discards this connection
    and checks out another: SQLAlchemy's "pessimistic disconnect handling" by a checkout
    event) for a connection the server closed."""
    if encrypted(dbapi_connection):
        ping(dbapi_connection)
        return
    try:
        closed = bool(dbapi_connection.closed) or server_spoke(dbapi_connection.fileno())
    except Exception as error:  # the driver's own error, or the OS's: no socket to ask
        raise DisconnectionError(f"pooled connection unusable: {error}") from error
    if closed:
        raise DisconnectionError("the server closed this pooled connection")


def encrypted(dbapi_connection: Any) -> bool:
    """Whether the connection runs over TLS (psycopg 3's `pgconn`, psycopg2's `info`)."""
    holder = getattr(dbapi_connection, "pgconn", None) or getattr(dbapi_connection, "info", None)
    return bool(getattr(holder, "ssl_in_use", False))


def ping(dbapi_connection: Any) -> None:
    """`SELECT 1`, as `pool_pre_ping` does, leaving no transaction open behind it."""
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()
    except Exception as error:  # the driver's own error: the connection is gone
        raise DisconnectionError(f"pooled connection unusable: {error}") from error
