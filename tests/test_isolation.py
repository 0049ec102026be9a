"""The kit's own promises: nothing a test commits outlives it, and only test databases are used."""

import tempfile

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.models import User
from tests.databases import NotATestDatabase, assert_test_database


def test_a_commit_inside_the_test_transaction_is_rolled_back(engine: Engine) -> None:
    """The same recipe as the fixtures, checked from the outside."""
    with engine.connect() as connection:
        outer = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        session.add(User(email="leak@example.com", username="leak"))
        session.commit()  # what the app does: releases a SAVEPOINT only
        session.add(User(email="leak2@example.com", username="leak2"))
        session.rollback()  # and what a failed request does: back to the SAVEPOINT
        assert session.scalar(select(func.count()).select_from(User)) == 1
        session.close()
        outer.rollback()
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        f"sqlite:///{tempfile.gettempdir()}/suite/db.sqlite",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "postgresql+psycopg://u:p@db.internal/app_test_7",
    ],
)
def test_test_databases_are_accepted(url: str) -> None:
    assert_test_database(make_url(url))


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////srv/resource-api/data/resource-api.db",
        "sqlite:////var/lib/app/prod.db",
        "postgresql+psycopg://postgres@db.internal:5432/app",
        "postgresql+psycopg://postgres:secret@db.internal:5432/production",
    ],
)
def test_anything_else_is_refused(url: str) -> None:
    with pytest.raises(NotATestDatabase, match="refusing to run tests") as refused:
        assert_test_database(make_url(url))
    assert "secret" not in str(refused.value)
