"""The database blocker: connections are refused unless the test asked for the database.

It watches every SQLAlchemy pool, the app's own included, so code that reaches the database
behind the fixtures' back is caught too.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool

HOW_TO_ASK = (
    "use the `db_session` fixture (or one built on it: `client`, `async_client`), "
    "or mark the test with `@pytest.mark.db`; a fixture of your own may wrap its database "
    "work in `with db_blocker.unblocked():`"
)


class DatabaseAccessBlocked(RuntimeError):
    """A test without the database fixture or marker tried to use the database."""


class DatabaseBlocker:
    def __init__(self) -> None:
        self._allowed = 0
        self.blocked_attempts: list[str] = []
        self.kit_pools: set[int] = set()
        self.foreign_checkouts: list[str] = []
        self.watching_checkouts = False

    def install(self) -> None:
        event.listen(Pool, "checkout", self._on_checkout)

    def uninstall(self) -> None:
        event.remove(Pool, "checkout", self._on_checkout)

    @property
    def allowed(self) -> bool:
        return self._allowed > 0

    @contextmanager
    def unblocked(self) -> Iterator[None]:
        self._allowed += 1
        try:
            yield
        finally:
            self._allowed -= 1

    def start_watching(self) -> None:
        self.blocked_attempts.clear()
        self.foreign_checkouts.clear()
        self.watching_checkouts = True

    def stop_watching(self) -> None:
        self.watching_checkouts = False

    def _on_checkout(self, _dbapi: Any, _record: Any, proxy: Any) -> None:
        pool = proxy._pool  # the pool lending this connection
        if not self.allowed:
            message = f"Database access is not allowed in this test: {HOW_TO_ASK}"
            self.blocked_attempts.append(repr(pool))
            raise DatabaseAccessBlocked(message)
        if self.watching_checkouts and id(pool) not in self.kit_pools:
            self.foreign_checkouts.append(repr(pool))
