"""The kit's settings: ini options naming the app's objects, imported only when needed."""

import importlib
import os
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import MetaData
from sqlalchemy.engine import URL, make_url

from pytest_fastapi_db.databases import project_url

INI_OPTIONS = {
    "fastapi_app": "the FastAPI app, as module:attribute",
    "fastapi_db_metadata": "the declarative Base or MetaData whose tables tests need",
    "fastapi_db_dependency": "the dependency that yields a Session (get_db), as module:attribute; "
    "unset, nothing is overridden and fastapi_db_bind alone points the app at the test",
    "fastapi_db_url_env": "environment variable with the test database URL (TEST_DATABASE_URL)",
    "fastapi_db_app_url_env": "environment variable the app reads its URL from (DATABASE_URL)",
    "fastapi_db_app_url_parts": "variables the app builds its URL from, as VAR=part (host, port, "
    "username, password, database, drivername), space-separated",
    "fastapi_token_factory": "the app's token function: f(data={'sub': …}, expires_delta=…)",
    "fastapi_user_factory": "a callable (session, **fields) -> user adding a user to the session",
    "fastapi_token_subject": "the user attribute a token names (email)",
    "fastapi_allowed_hosts": "hosts tests may connect to besides loopback and the test database",
    "fastapi_db_alembic": "build the schema from migrations: a callable () -> alembic Config",
    "fastapi_db_session_factory": "the app's sessionmaker or Session class, for the test session",
    "fastapi_db_bind": "the app's module-level sessionmakers to bind to the test connection",
    "fastapi_base_url": "the base URL of `client` and `async_client` (http://testserver)",
    "fastapi_db_migrations_timeout": "seconds the migrations may take before the run fails (60)",
    "fastapi_db_app_drivers": "the driver the app's URL names, per backend (postgresql+asyncpg "
    "sqlite+aiosqlite): the app and the async fixtures get the test URL with it",
}
DEFAULTS = {
    "fastapi_db_url_env": "TEST_DATABASE_URL",
    "fastapi_db_app_url_env": "DATABASE_URL",
    "fastapi_token_subject": "email",
    "fastapi_base_url": "http://testserver",
    "fastapi_db_migrations_timeout": "60",
}
DEFAULT_TEST_DATABASE_URL = "sqlite://"


def add_ini_options(parser: pytest.Parser) -> None:
    for name, help_text in INI_OPTIONS.items():
        parser.addini(name, help_text, default=DEFAULTS.get(name, ""))


def worker_id() -> str:
    """pytest-xdist's worker name (gw0, gw1, …), or "master"; known before any conftest."""
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


URL_PARTS = ("host", "port", "username", "password", "database", "drivername")


def app_environment(config: pytest.Config, url: URL) -> dict[str, str]:
    """The variables that point the app at `url`: its URL variable, and the parts of the URL
    for apps that assemble it from settings (`POSTGRES_SERVER=host POSTGRES_DB=database`)."""
    environment = {config.getini("fastapi_db_app_url_env"): url.render_as_string(False)}
    for pair in config.getini("fastapi_db_app_url_parts").split():
        variable, _, part = pair.partition("=")
        if part not in URL_PARTS:
            raise pytest.UsageError(
                f"pytest-fastapi-db: fastapi_db_app_url_parts: {pair!r} is not VAR=part, with "
                f"part one of {', '.join(URL_PARTS)}"
            )
        value = getattr(url, part)
        environment[variable] = "" if value is None else str(value)
    return environment


def app_database_url(config: pytest.Config) -> URL:
    """The test database as the app reaches it: with its own driver (`fastapi_db_app_drivers`)."""
    url = test_database_url(config)
    for drivername in config.getini("fastapi_db_app_drivers").split():
        if drivername.partition("+")[0] == url.get_backend_name():
            return url.set(drivername=drivername)
    return url


def test_database_url(config: pytest.Config) -> URL:
    """The database this project's tests (this worker's) use: from `fastapi_db_url_env`
    (SQLite in memory by default), named for the project and the worker."""
    given = os.environ.get(config.getini("fastapi_db_url_env")) or DEFAULT_TEST_DATABASE_URL
    return project_url(make_url(given), config.rootpath, worker_id())


def import_object(path: str, option: str) -> Any:
    """`package.module:attribute` → the object, or a usage error naming the ini option."""
    if not path:
        raise pytest.UsageError(f"pytest-fastapi-db: set the ini option `{option}`")
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split(".") if attribute else []:
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"pytest-fastapi-db: `{option} = {path}`: {exc}") from exc
    return target


@dataclass
class KitConfig:
    config: pytest.Config

    def option(self, name: str) -> str:
        value: str = self.config.getini(name)
        return value

    def load(self, name: str) -> Any:
        return import_object(self.option(name), name)

    def load_optional(self, name: str) -> Any:
        """The object an ini option names, or None when the option is unset."""
        return self.load(name) if self.option(name) else None

    def alembic_config(self) -> Any:
        """The Alembic config to build the schema with, or None to build it from the metadata."""
        if not self.option("fastapi_db_alembic"):
            return None
        return self.load("fastapi_db_alembic")()

    @property
    def migrations_timeout(self) -> float:
        return float(self.option("fastapi_db_migrations_timeout"))

    def load_all(self, name: str) -> list[Any]:
        """Every `module:attribute` of a space-separated ini option."""
        return [import_object(path, name) for path in self.option(name).split()]

    @property
    def metadata(self) -> MetaData:
        target = self.load("fastapi_db_metadata")
        metadata = target if isinstance(target, MetaData) else getattr(target, "metadata", None)
        if not isinstance(metadata, MetaData):
            raise pytest.UsageError("pytest-fastapi-db: fastapi_db_metadata is not a MetaData")
        return metadata
