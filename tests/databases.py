"""Test databases: the guard against real ones, and one PostgreSQL database per xdist worker."""

import tempfile
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url

from app.database import build_engine


class NotATestDatabase(RuntimeError):
    pass


def assert_test_database(url: URL) -> None:
    """Refuse anything but SQLite in memory or in a temp dir, or a database named *test*."""
    database = url.database or ""
    if url.get_backend_name() == "sqlite":
        if database in ("", ":memory:"):
            return
        if Path(database).resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()):
            return
    elif "test" in database.lower():
        return
    raise NotATestDatabase(
        f"refusing to run tests against {url.render_as_string(hide_password=True)}: "
        "use SQLite in memory or under the temp dir, or a database whose name contains 'test'"
    )


def fresh_database(url: URL, name: str) -> URL:
    """A new, empty PostgreSQL database `name` beside `url`'s (dropped first if it exists)."""
    admin = build_engine(url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name)


def test_engine(url_text: str, worker_id: str) -> Engine:
    """The suite's engine; under pytest-xdist each PostgreSQL worker gets `<name>_<worker>`."""
    url = make_url(url_text)
    assert_test_database(url)
    if worker_id != "master" and url.get_backend_name() == "postgresql":
        url = fresh_database(url, f"{url.database}_{worker_id}")
    return build_engine(url.render_as_string(hide_password=False))


test_engine.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
