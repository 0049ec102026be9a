"""The test's sessions, made the way the app makes its own, and the app's module-level
sessionmakers pointed at the test's connection for the length of a test."""

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

JOINED = {"join_transaction_mode": "create_savepoint"}


class SessionFactory:
    """Sessions of the app's own kind: its sessionmaker (class, `expire_on_commit`, `autoflush`
    and all) or its Session class (SQLModel's, say); without one, a plain Session that keeps
    objects readable after commit."""

    def __init__(self, factory: Any = None) -> None:
        if factory is not None and not (
            isinstance(factory, sessionmaker)
            or (inspect.isclass(factory) and issubclass(factory, Session))
        ):
            raise TypeError(
                f"fastapi_db_session_factory must be a sessionmaker or a Session class, not "
                f"{factory!r}"
            )
        self.factory = factory

    def __call__(self, bind: Any, *, joined: bool = False) -> Session:
        """A session on `bind`; `joined`: inside its transaction, committing to SAVEPOINTs."""
        options: dict[str, Any] = {"bind": bind, **(JOINED if joined else {})}
        if self.factory is None:
            return Session(expire_on_commit=False, **options)
        session: Session = self.factory(**options)
        return session


@contextmanager
def bound(makers: list[Any], bind: Any, *, joined: bool) -> Iterator[None]:
    """The app's module-level sessionmakers make sessions on `bind` meanwhile, then as before."""
    saved = [dict(maker.kw) for maker in makers]
    for maker in makers:
        if not hasattr(maker, "configure"):
            raise TypeError(f"fastapi_db_bind names {maker!r}, which is not a sessionmaker")
        maker.configure(bind=bind, **(JOINED if joined else {}))
    try:
        yield
    finally:
        for maker, kw in zip(makers, saved, strict=True):
            maker.kw.clear()
            maker.kw.update(kw)
