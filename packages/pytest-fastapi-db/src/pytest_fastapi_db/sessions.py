"""The test's sessions, made the way the app makes its own, and the app's module-level
sessionmakers pointed at the test's connection for the length of a test."""

import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

JOINED = {"join_transaction_mode": "create_savepoint"}


def _is_async_factory(factory: Any) -> bool:
    # Only an app that imported SQLAlchemy's asyncio has async sessions; importing it here
    # would need greenlet, which sync apps need not have.
    asyncio_ext = sys.modules.get("sqlalchemy.ext.asyncio")
    if asyncio_ext is None:
        return False
    return isinstance(factory, asyncio_ext.async_sessionmaker) or (
        inspect.isclass(factory) and issubclass(factory, asyncio_ext.AsyncSession)
    )


class SessionFactory:
    """Sessions of the app's own kind: its sessionmaker or async_sessionmaker (class,
    `expire_on_commit`, `autoflush` and all) or its Session class (SQLModel's, an AsyncSession
    subclass); without one, a plain Session or AsyncSession that keeps objects readable after
    commit. An async factory, or a db dependency that is an async generator, makes the app an
    async one: its test sessions are AsyncSessions."""

    def __init__(self, factory: Any = None, *, dependency: Any = None) -> None:
        if factory is not None and not (
            isinstance(factory, sessionmaker)
            or (inspect.isclass(factory) and issubclass(factory, Session))
            or _is_async_factory(factory)
        ):
            raise TypeError(
                "fastapi_db_session_factory must be a sessionmaker, an async_sessionmaker or a "
                f"Session class, not {factory!r}"
            )
        self.factory = factory
        self.is_async = (
            _is_async_factory(factory)
            if factory is not None
            else (inspect.isasyncgenfunction(dependency))
        )

    def sync_session(self, connection: Any) -> Session:
        """A sync session of the app's kind on `connection`, inside its transaction: for seed
        rows (an async app's sessionmaker lends its `sync_session_class`)."""
        kind: Any = Session
        if self.factory is not None and self.is_async:
            kw = getattr(self.factory, "kw", {})
            kind = kw.get(
                "sync_session_class", getattr(self.factory, "sync_session_class", Session)
            )
        elif self.factory is not None:
            kind = self.factory
        session: Session = kind(bind=connection, **JOINED)
        return session

    def __call__(self, bind: Any, *, joined: bool = False) -> Any:
        """A session on `bind`; `joined`: inside its transaction, committing to SAVEPOINTs."""
        options: dict[str, Any] = {"bind": bind, **(JOINED if joined else {})}
        if self.factory is not None:
            return self.factory(**options)
        if self.is_async:
            from sqlalchemy.ext.asyncio import AsyncSession

            return AsyncSession(expire_on_commit=False, **options)
        return Session(expire_on_commit=False, **options)


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
