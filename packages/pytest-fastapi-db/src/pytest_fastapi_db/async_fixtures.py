"""Async fixtures (the `async` extra: pytest-asyncio, greenlet, an async driver): the async
engine and session, and an httpx client on the app. They share the session's event loop."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pytest_fastapi_db.blocker import DatabaseBlocker
from pytest_fastapi_db.config import KitConfig, test_database_url
from pytest_fastapi_db.databases import build_async_test_engine, ensure_database, prepare_schema
from pytest_fastapi_db.db_fixtures import check_teardown


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def async_db_engine(
    pytestconfig: pytest.Config, kit: KitConfig, db_blocker: DatabaseBlocker
) -> AsyncIterator[AsyncEngine]:
    """The async engine, on the session's event loop like every async fixture and test."""
    with db_blocker.unblocked():
        engine = build_async_test_engine(ensure_database(test_database_url(pytestconfig)))
        db_blocker.kit_pools.add(id(engine.sync_engine.pool))
        async with engine.begin() as connection:
            await connection.run_sync(prepare_schema, kit.metadata, kit.alembic_config())
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def async_db_session(
    async_db_engine: AsyncEngine, db_blocker: DatabaseBlocker
) -> AsyncIterator[AsyncSession]:
    """`db_session` for async code: an AsyncSession in a transaction rolled back at the end."""
    with db_blocker.unblocked():
        async with async_db_engine.connect() as connection:
            outer = await connection.begin()
            session = AsyncSession(
                bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
            db_blocker.start_watching()
            try:
                yield session
            finally:
                db_blocker.stop_watching()
                await session.close()
            intact = outer.is_active
            if intact:
                await outer.rollback()
    check_teardown(intact, db_blocker)


@pytest_asyncio.fixture
async def async_client(app_with_test_session: Any, kit: KitConfig) -> AsyncIterator[Any]:
    """An httpx client on the app (its lifespan run), for `async def` tests."""
    import httpx

    app = app_with_test_session
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        base_url = kit.option("fastapi_base_url")
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


__all__ = ["async_client", "async_db_engine", "async_db_session"]
