"""The test-database guard: what counts as a test database, and a hook that refuses every
connection to anything else as it is opened, before any statement runs, whatever engine
(the app's own included) opens it."""

import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, Dialect, make_url


class NotATestDatabase(RuntimeError):
    """The URL does not look like a database made for tests."""


# "test" as a word of the name: test, test_app, app_test, app_test_gw1; not latest, contest.
TEST_NAME = re.compile(r"(^|[_-])test([_-]|$)", re.IGNORECASE)
HOW_TO_FIX = (
    "the kit points DATABASE_URL (fastapi_db_app_url_env) at the test database before any "
    "conftest runs: build engines from it, or name module-level sessionmakers in fastapi_db_bind"
)


def is_test_database(backend: str, database: str) -> bool:
    """SQLite in memory or under the temp dir, or a database whose name has the word `test`."""
    if backend == "sqlite":
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            return True
        path = database.removeprefix("file:").partition("?")[0]
        return Path(path).resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())
    return bool(TEST_NAME.search(database))


def assert_test_database(url: URL | str) -> None:
    """Refuse anything but SQLite in memory or under the temp dir, or a test-named database."""
    url = make_url(url)
    if not is_test_database(url.get_backend_name(), url.database or ""):
        raise NotATestDatabase(
            f"pytest-fastapi-db refuses to run tests against "
            f"{url.render_as_string(hide_password=True)}: use SQLite in memory or under the "
            "temp dir, or a database named as a test one (test, test_app, app_test)"
        )


_maintenance = threading.local()
MAINTENANCE_DATABASES = ("postgres", "template1")


@contextmanager
def maintenance() -> Iterator[None]:
    """Let the kit's own CREATE/DROP DATABASE reach the server's maintenance database."""
    _maintenance.depth = getattr(_maintenance, "depth", 0) + 1
    try:
        yield
    finally:
        _maintenance.depth -= 1


def _target(dialect: Dialect, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> URL:
    """What a DBAPI connect is about to reach, as a URL without its password."""
    if dialect.name == "sqlite":
        database = str(cargs[0]) if cargs else str(cparams.get("database", ""))
        return URL.create("sqlite", database=database)
    database = cparams.get("dbname") or cparams.get("database") or cparams.get("db") or ""
    return URL.create(
        dialect.name,
        username=cparams.get("user") or cparams.get("username"),
        host=cparams.get("host"),
        port=cparams.get("port"),
        database=str(database),
    )


def _check_connect(
    dialect: Dialect, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> None:
    target = _target(dialect, cargs, cparams)
    database = target.database or ""
    if getattr(_maintenance, "depth", 0) and database in MAINTENANCE_DATABASES:
        return
    if not is_test_database(dialect.name, database):
        raise NotATestDatabase(
            f"pytest-fastapi-db refused a connection to {target.render_as_string()}, which is "
            f"not a test database: {HOW_TO_FIX}"
        )


def refuse_non_test_connections() -> None:
    event.listen(Engine, "do_connect", _check_connect)


def allow_any_connections() -> None:
    event.remove(Engine, "do_connect", _check_connect)
