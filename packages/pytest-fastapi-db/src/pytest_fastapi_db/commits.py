"""What each commit of the test's session wrote, observable although nothing really commits.

Inside the test's outer transaction the app's `commit()` only releases a SAVEPOINT, but
SQLAlchemy still fires `after_commit` for it: that is the moment a request's after-commit work
(publishing events, sending mail) happens, and what this records.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session


@dataclass
class Commit:
    """The objects one commit inserted, updated and deleted, in flush order."""

    created: list[Any] = field(default_factory=list)
    updated: list[Any] = field(default_factory=list)
    deleted: list[Any] = field(default_factory=list)


class CommitLog(list[Commit]):
    def created(self, kind: type | None = None) -> list[Any]:
        """Everything created across the commits, or only the instances of `kind`."""
        return [o for commit in self for o in commit.created if kind is None or isinstance(o, kind)]


@contextmanager
def capturing(session: Session) -> Iterator[CommitLog]:
    log = CommitLog()
    pending = Commit()

    def after_flush(flushed: Session, _context: Any) -> None:
        pending.created.extend(flushed.new)
        pending.updated.extend(o for o in flushed.dirty if flushed.is_modified(o))
        pending.deleted.extend(flushed.deleted)

    def after_commit(_session: Session) -> None:
        nonlocal pending
        log.append(pending)
        pending = Commit()

    def after_rollback(_session: Session) -> None:
        nonlocal pending
        pending = Commit()

    def after_soft_rollback(rolled_back: Session, _previous: Any) -> None:
        after_rollback(rolled_back)

    hooks: dict[str, Callable[..., None]] = {
        "after_flush": after_flush,
        "after_commit": after_commit,
        "after_soft_rollback": after_soft_rollback,
    }
    for name, hook in hooks.items():
        event.listen(session, name, hook)
    try:
        yield log
    finally:
        for name, hook in hooks.items():
            event.remove(session, name, hook)
