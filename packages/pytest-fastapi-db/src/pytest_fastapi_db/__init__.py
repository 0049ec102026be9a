"""pytest-fastapi-db: one rolled-back transaction per test for FastAPI + SQLAlchemy apps."""

from pytest_fastapi_db.blocker import DatabaseAccessBlocked
from pytest_fastapi_db.guard import NotATestDatabase, assert_test_database
from pytest_fastapi_db.queries import QueryCountMismatch

__all__ = [
    "DatabaseAccessBlocked",
    "NotATestDatabase",
    "QueryCountMismatch",
    "assert_test_database",
]
