"""Real sockets refused during tests, except to loopback and the hosts the suite names.

External services are to be mocked at the HTTP layer (respx); a test that reaches the real
network is flaky at best and harmful at worst.
"""

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class NetworkBlocked(RuntimeError):
    """A test tried to open a connection to a host outside the allowed list."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _allowed(address: Any, allowed_hosts: frozenset[str]) -> bool:
    if not isinstance(address, tuple):  # Unix sockets and the like stay on this machine
        return True
    host = str(address[0])
    return _is_loopback(host) or host in allowed_hosts


@contextmanager
def only_allowed_hosts(allowed_hosts: frozenset[str]) -> Iterator[list[str]]:
    """Refuse connections elsewhere; yields the list of the refused addresses, so that a
    refusal some library caught and swallowed can still fail the test."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    refused: list[str] = []

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _allowed(
            address, allowed_hosts
        ):
            refused.append(repr(address))
            raise NetworkBlocked(
                f"pytest-fastapi-db: the test tried to connect to {address!r}; mock external "
                "services at the HTTP layer (respx), or add the host to "
                "`fastapi_allowed_hosts`"
            )

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    try:
        yield refused
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
