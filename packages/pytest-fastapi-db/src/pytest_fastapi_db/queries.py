"""Counting the SQL a block of code runs (SAVEPOINT bookkeeping does not count)."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

BOOKKEEPING = re.compile(
    r"^\s*(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT|BEGIN|COMMIT|ROLLBACK)\b", re.I
)


class QueryCountMismatch(AssertionError):
    pass


class QueryLog:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __len__(self) -> int:
        return len(self.statements)

    def listing(self) -> str:
        return "\n".join(f"{n}. {sql}" for n, sql in enumerate(self.statements, 1)) or "(none)"


@contextmanager
def recording(engine: Engine) -> Iterator[QueryLog]:
    log = QueryLog()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not BOOKKEEPING.match(statement):
            log.statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def assert_queries(engine: Engine, expected: int, *, exact: bool) -> Iterator[QueryLog]:
    with recording(engine) as log:
        yield log
    if (len(log) != expected) if exact else (len(log) > expected):
        wanted = f"{expected}" if exact else f"at most {expected}"
        raise QueryCountMismatch(
            f"expected {wanted} queries, ran {len(log)} (SAVEPOINTs not counted):\n{log.listing()}"
        )
