"""Async fixtures (the `async` extra: pytest-asyncio, greenlet, an async driver): the async
engine and the test's AsyncSession, of the app's kind, and an httpx client on the app. They
all share the session's event loop, where the connections live."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pytest_fastapi_db.blocker import DatabaseBlocker
from pytest_fastapi_db.config import KitConfig, app_database_url
from pytest_fastapi_db.databases import build_async_test_engine, ensure_database
from pytest_fastapi_db.db_fixtures import (
    Seed,
    check_teardown,
    one_line_failures,
    reset_tables_on,
    wants_commits,
)
from pytest_fastapi_db.schema import build_schema_async
from pytest_fastapi_db.sessions import SessionFactory, bound


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def async_db_engine(
    pytestconfig: pytest.Config,
    kit: KitConfig,
    db_blocker: DatabaseBlocker,
    session_factory: SessionFactory,
    db_seed: Seed,
) -> AsyncIterator[AsyncEngine]:
    """The async engine, on the URL's own async driver, its database made if missing, the
    schema built once and reused, the tables emptied and seeded once per run."""
    with db_blocker.unblocked(), one_line_failures():
        engine = build_async_test_engine(ensure_database(app_database_url(pytestconfig)))
        db_blocker.kit_pools.add(id(engine.sync_engine.pool))
        await build_schema_async(engine, kit.metadata, kit.alembic_config(), kit.migrations_timeout)
        await reset_async(engine, kit, session_factory, db_seed)
    yield engine
    await engine.dispose()


async def reset_async(
    engine: AsyncEngine, kit: KitConfig, factory: SessionFactory, seed: Seed
) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(reset_tables_on, kit.metadata, factory, seed)


@pytest_asyncio.fixture(loop_scope="session")
async def async_db_session(
    request: pytest.FixtureRequest,
    async_db_engine: AsyncEngine,
    db_blocker: DatabaseBlocker,
    kit: KitConfig,
    session_factory: SessionFactory,
    db_seed: Seed,
) -> AsyncIterator[AsyncSession]:
    """`db_session` for async code: an AsyncSession (the app's kind when its factory is async)
    in a transaction rolled back at the end, or committing for real with
    `@pytest.mark.db(transaction=True)`, the tables emptied and seeded again afterwards."""
    factory = session_factory if session_factory.is_async else SessionFactory(AsyncSession)
    makers = kit.load_all("fastapi_db_bind") if session_factory.is_async else []
    with db_blocker.unblocked():
        if wants_commits(request):
            with bound(makers, async_db_engine, joined=False):
                session = factory(async_db_engine)
                try:
                    yield session
                finally:
                    await session.close()
                    await reset_async(async_db_engine, kit, session_factory, db_seed)
            return
        async with async_db_engine.connect() as connection:
            outer = await connection.begin()
            session = factory(connection, joined=True)
            db_blocker.start_watching()
            try:
                with bound(makers, connection, joined=True):
                    yield session
            finally:
                db_blocker.stop_watching()
                await session.close()
            intact = outer.is_active
            if intact:
                await outer.rollback()
    check_teardown(intact, db_blocker)


@pytest_asyncio.fixture(loop_scope="session")
async def async_client(app_with_test_session: Any, kit: KitConfig) -> AsyncIterator[Any]:
    """An httpx client on the app (its lifespan run), for `async def` tests."""
    import httpx

    app = app_with_test_session
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        base_url = kit.option("fastapi_base_url")
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def session_event_loop() -> asyncio.AbstractEventLoop:
    """The loop the async engine, sessions and tests run on."""
    return asyncio.get_running_loop()


__all__ = ["async_client", "async_db_engine", "async_db_session", "session_event_loop"]
