"""The pytest plugin: its hooks and markers. The fixtures live in db_fixtures, app_fixtures,
identity_fixtures and (with the `async` extra) async_fixtures; importing them here is what
makes pytest find them.

Inert until `fastapi_db_metadata` is set in the ini file, so that installing it never changes
a suite that does not use it.
"""

import importlib.util
import os

import pytest

from pytest_fastapi_db.app_fixtures import *  # noqa: F403
from pytest_fastapi_db.blocker import DatabaseBlocker
from pytest_fastapi_db.config import (
    DEFAULT_TEST_DATABASE_URL,
    add_ini_options,
    app_database_url,
    app_environment,
)
from pytest_fastapi_db.db_fixtures import *  # noqa: F403
from pytest_fastapi_db.db_fixtures import BLOCKER, CALL_PASSED, MARKER, active
from pytest_fastapi_db.guard import (
    NotATestDatabase,
    allow_any_connections,
    assert_test_database,
    refuse_non_test_connections,
)
from pytest_fastapi_db.identity_fixtures import *  # noqa: F403

if all(importlib.util.find_spec(name) for name in ("pytest_asyncio", "greenlet")):
    from pytest_fastapi_db.async_fixtures import *  # noqa: F403

# Collection order: rollback tests, then transactional ones, then tests without a database.
ROLLBACK, TRANSACTIONAL, NO_DATABASE = range(3)
GUARD = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_ini_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Point the app at the test database before any conftest can import it."""
    if not active(early_config):
        return
    given = os.environ.get(early_config.getini("fastapi_db_url_env")) or DEFAULT_TEST_DATABASE_URL
    try:
        assert_test_database(given)
    except NotATestDatabase as exc:
        raise pytest.UsageError(str(exc)) from None
    os.environ.update(app_environment(early_config, app_database_url(early_config)))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(transaction=False): the test uses the database; transaction=True commits for "
        "real and empties the tables afterwards",
    )
    if active(config):
        blocker = DatabaseBlocker()
        blocker.install()
        config.stash[BLOCKER] = blocker
        refuse_non_test_connections()
        config.stash[GUARD] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    if BLOCKER in config.stash:
        config.stash[BLOCKER].uninstall()
    if config.stash.get(GUARD, False):
        allow_any_connections()


def _group(item: pytest.Item) -> int:
    marker = item.get_closest_marker(MARKER)
    fixtures = set(getattr(item, "fixturenames", ()))
    if (marker is not None and marker.kwargs.get("transaction")) or "live_server" in fixtures:
        return TRANSACTIONAL
    if marker is not None or fixtures & {"db_session", "async_db_session", "current_session"}:
        return ROLLBACK
    return NO_DATABASE


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A stable sort by group, after any shuffling: random order within each group."""
    if active(config):
        items.sort(key=_group)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Remember whether the test itself passed: teardown checks judge by it."""
    report = yield
    if call.when == "call":
        item.stash[CALL_PASSED] = report.passed  # type: ignore[attr-defined]
    return report
