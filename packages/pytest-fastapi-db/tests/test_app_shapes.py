"""The app's own shape: its session class and factory, its module-level sessionmakers, its token
signature, seed rows, and connections that must never reach a database not made for tests."""

import os
import sys
import uuid
from pathlib import Path

import pytest
from kit_project import INI, run  # type: ignore[import-not-found]
from pytest_fastapi_db.blocker import DatabaseBlocker
from pytest_fastapi_db.guard import (
    NotATestDatabase,
    assert_test_database,
    is_test_database,
    maintenance,
)
from pytest_fastapi_db.sessions import SessionFactory
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

# The suite's own test database, read before any fixture sets one for a pytester project.
SUITE_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")

# An app of the common "module-level SessionLocal" shape: sessions from its own sessionmaker
# (expire_on_commit left at True), a Session class of its own with an `exec` method (as
# SQLModel's has), its engine built from a URL of its own, not from DATABASE_URL.
SHAPED_APP = """
import os
from fastapi import Depends, FastAPI
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(100))
    owner: Mapped[str] = mapped_column(String(100), default="")


class AppSession(Session):
    def exec(self, statement):
        return self.execute(statement).scalars()


engine = create_engine(os.environ["SHAPED_APP_DATABASE"])
SessionLocal = sessionmaker(bind=engine, class_=AppSession, autoflush=False)


def get_db():
    with SessionLocal() as session:
        yield session


def token_for(user_id: int) -> str:
    return f"token-{user_id}"


app = FastAPI()


@app.post("/notes")
def add(text: str, db: AppSession = Depends(get_db)):
    note = Note(text=text)
    db.add(note)
    db.commit()
    return {"id": note.id, "text": note.text}


@app.put("/notes/{note_id}")
def replace(note_id: int, text: str, db: AppSession = Depends(get_db)):
    note = db.get(Note, note_id)
    note.text = text
    db.commit()
    return {"id": note.id, "text": note.text}


@app.get("/notes")
def notes(db: AppSession = Depends(get_db)):
    return [note.text for note in db.exec(select(Note).order_by(Note.id))]


def record_in_the_background(text: str) -> None:
    with SessionLocal() as session:
        session.add(Note(text=text))
        session.commit()
"""

SHAPED_INI = """
[pytest]
fastapi_app = shaped:app
fastapi_db_metadata = shaped:Base
fastapi_db_dependency = shaped:get_db
fastapi_db_session_factory = shaped:SessionLocal
fastapi_db_bind = shaped:SessionLocal
fastapi_base_url = https://api.example.test
"""


@pytest.fixture
def shaped(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # The app's own URL names no test database: nothing may ever reach it.
    monkeypatch.setenv("SHAPED_APP_DATABASE", "postgresql+psycopg://app@127.0.0.1:1/production")
    project.makepyfile(shaped=SHAPED_APP)
    project.makeini(SHAPED_INI)
    return project


def test_the_test_session_is_of_the_apps_kind(shaped: pytest.Pytester) -> None:
    shaped.makepyfile(
        test_kind="""
        from shaped import AppSession, Note

        def test_class_and_options(db_session):
            assert isinstance(db_session, AppSession)
            assert db_session.expire_on_commit is True and db_session.autoflush is False

        def test_routes_using_the_class_work(client):
            client.post("/notes", params={"text": "a"})
            assert client.get("/notes").json() == ["a"]

        def test_a_put_returns_what_was_stored(client, db_session):
            created = client.post("/notes", params={"text": "old"}).json()
            db_session.get(Note, created["id"])  # the test holds the object too
            replaced = client.put(f"/notes/{created['id']}", params={"text": "new"}).json()
            assert replaced["text"] == "new"
            assert db_session.get(Note, created["id"]).text == "new"
        """
    )
    run(shaped).assert_outcomes(passed=3)


def test_module_level_sessionmakers_write_inside_the_test_transaction(
    shaped: pytest.Pytester,
) -> None:
    shaped.makepyfile(
        test_bound="""
        import pytest
        from shaped import Note, record_in_the_background

        def test_writes_through_session_local(db_session):
            record_in_the_background("background")
            assert [n.text for n in db_session.query(Note)] == ["background"]

        def test_and_they_were_rolled_back(db_session):
            assert db_session.query(Note).count() == 0

        @pytest.mark.db(transaction=True)
        def test_in_a_transactional_test_they_commit_to_the_test_database(db_session):
            record_in_the_background("committed")
            assert [n.text for n in db_session.query(Note)] == ["committed"]
        """
    )
    run(shaped).assert_outcomes(passed=3)


def test_an_unbound_sessionmaker_never_reaches_its_database(shaped: pytest.Pytester) -> None:
    shaped.makeini(SHAPED_INI.replace("fastapi_db_bind = shaped:SessionLocal\n", ""))
    shaped.makepyfile(
        test_escape="""
        from shaped import record_in_the_background

        def test_writes_through_session_local(db_session):
            record_in_the_background("lost")
        """
    )
    result = run(shaped)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*NotATestDatabase: pytest-fastapi-db refused a connection to "
            "postgresql://app@127.0.0.1:1/production, which is not a test database*"
        ]
    )


def test_engines_of_its_own_are_refused_before_they_connect(project: pytest.Pytester) -> None:
    # Outside the temp dir on purpose: no test database may live there.
    outside_temp = Path("/var/tmp") / f"pytest-fastapi-db-{uuid.uuid4().hex}.db"  # noqa: S108
    project.makepyfile(
        test_own_engine=f"""
        import pytest
        from sqlalchemy import create_engine, text
        from pytest_fastapi_db import NotATestDatabase

        @pytest.mark.parametrize("url", [
            "sqlite:///{outside_temp}",
            "postgresql+psycopg://app:secret@127.0.0.1:1/latest_prod",
        ])
        def test_refused(db_session, url):
            with pytest.raises(NotATestDatabase, match="not a test database") as refused:
                create_engine(url).connect()
            assert "secret" not in str(refused.value)
        """
    )
    run(project).assert_outcomes(passed=2)
    assert not outside_temp.exists()  # refused before the driver could make the file


SEEDED = """
import pytest
from kitapp import Item

@pytest.fixture(scope="session")
def db_seed():
    def seed(session):
        session.add_all([Item(name="seeded 1"), Item(name="seeded 2")])
    return seed
"""


def test_seed_rows_are_there_in_every_test(project: pytest.Pytester) -> None:
    project.makeconftest(SEEDED)
    project.makepyfile(
        test_seed="""
        import pytest

        def test_sees_them(client):
            assert client.get("/items/count").json() == {"count": 2}

        def test_adds_one(client):
            client.post("/items", params={"name": "mine"})
            assert client.get("/items/count").json() == {"count": 3}

        @pytest.mark.db(transaction=True)
        def test_empties_the_tables(db_session):
            from kitapp import Item
            db_session.query(Item).delete()
            db_session.commit()

        @pytest.mark.db(transaction=True)
        def test_and_they_are_back(db_session):
            from kitapp import Item
            assert db_session.query(Item).count() == 2
        """
    )
    run(project, "-p", "randomly").assert_outcomes(passed=4)


def test_the_token_maker_can_be_the_apps_own(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
        import pytest
        from kitapp import create_token

        @pytest.fixture
        def mint_token():
            # An app whose tokens name the user's email under its own claim shape.
            return lambda user, expires_delta=None: create_token(
                {"sub": user.email, "scope": "all"}, expires_delta
            )
        """
    )
    project.makepyfile(
        test_tokens="""
        import pytest

        def test_valid(client, user, auth_headers):
            assert client.get("/me", headers=auth_headers).json() == {"email": user.email}

        @pytest.mark.parametrize("kind", ["expired", "tampered", "unsigned"])
        def test_refused(client, user, tokens, kind):
            assert client.get("/me", headers=tokens.headers(user, kind)).status_code == 401
        """
    )
    run(project).assert_outcomes(passed=4)


def test_the_client_base_url_is_an_option(shaped: pytest.Pytester) -> None:
    shaped.makepyfile(
        test_base="""
        def test_base_url(client):
            assert str(client.base_url) == "https://api.example.test"
        """
    )
    run(shaped).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "name", ["test", "test_app", "app_test", "app_test_gw1", "my-test-db", "TEST_X"]
)
def test_test_names_pass_the_guard(name: str) -> None:
    assert is_test_database("postgresql", name)


@pytest.mark.parametrize("name", ["latest_prod", "contest", "production", "testing", "attest"])
def test_names_merely_containing_test_are_refused(name: str) -> None:
    with pytest.raises(NotATestDatabase):
        assert_test_database(f"postgresql+psycopg://u@db.internal/{name}")


def test_a_serial_postgresql_run_makes_its_database(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_blocker: DatabaseBlocker
) -> None:
    given = SUITE_DATABASE_URL
    if not given.startswith("postgresql"):
        pytest.skip("needs TEST_DATABASE_URL on PostgreSQL (the suite's PostgreSQL run)")
    base = given.rsplit("/", 1)[0]
    fresh = f"test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TEST_DATABASE_URL", f"{base}/{fresh}")
    project.makepyfile(
        test_made=f"""
        import os
        from sqlalchemy.engine import make_url

        def test_on_its_own_database(db_session):
            name = make_url(os.environ["DATABASE_URL"]).database
            assert name.startswith({fresh + "_"!r})
        """
    )
    run(project).assert_outcomes(passed=1)
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with db_blocker.unblocked(), maintenance(), admin.connect() as connection:
        names = connection.scalars(
            text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": f"{fresh}_%"}
        ).all()
        for name in names:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
    assert len(names) == 1  # made by the serial run, named for its project


def test_url_parts_must_name_parts_of_a_url(project: pytest.Pytester) -> None:
    project.makeini(INI + "fastapi_db_app_url_parts = DB_HOST=hostname\n")
    project.makepyfile(test_anything="def test_x(): pass")
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'DB_HOST=hostname' is not VAR=part*"])


ASYNC_APP = """
import os
from fastapi import Depends, FastAPI
from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"])


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


async def get_db():
    async with AsyncSession(engine) as session:
        yield session


app = FastAPI()


@app.post("/items")
async def add(name: str, db: AsyncSession = Depends(get_db)):
    db.add(Item(name=name))
    await db.commit()
    return {"ok": True}


@app.get("/items/count")
async def count(db: AsyncSession = Depends(get_db)):
    return {"count": await db.scalar(select(func.count(Item.id)))}
"""


def test_an_async_dependency_gets_async_sessions_everywhere(project: pytest.Pytester) -> None:
    project.makepyfile(asyncapp=ASYNC_APP)
    project.makeini(
        """
        [pytest]
        fastapi_app = asyncapp:app
        fastapi_db_metadata = asyncapp:Base
        fastapi_db_dependency = asyncapp:get_db
        fastapi_db_app_drivers = sqlite+aiosqlite
        asyncio_default_fixture_loop_scope = session
        asyncio_default_test_loop_scope = session
        """
    )
    project.makepyfile(
        test_async="""
        import pytest
        from asyncapp import Item

        def test_sync_client(client, assert_num_queries):
            client.post("/items", params={"name": "a"})
            with assert_num_queries(1):
                assert client.get("/items/count").json() == {"count": 1}

        @pytest.mark.asyncio
        async def test_async_client_starts_clean(async_client, capture_after_commit):
            with capture_after_commit() as commits:
                await async_client.post("/items", params={"name": "b"})
            assert [item.name for item in commits.created(Item)] == ["b"]
            assert (await async_client.get("/items/count")).json() == {"count": 1}

        @pytest.mark.asyncio
        @pytest.mark.db(transaction=True)
        async def test_transactional(async_client, async_db_session):
            await async_client.post("/items", params={"name": "c"})
            await async_db_session.rollback()
            assert (await async_client.get("/items/count")).json() == {"count": 1}

        def test_and_after_it_the_tables_are_empty(client):
            assert client.get("/items/count").json() == {"count": 0}
        """
    )
    run(project, "-p", "randomly").assert_outcomes(passed=4)


def test_seed_rows_are_added_by_a_session_of_the_apps_kind(shaped: pytest.Pytester) -> None:
    shaped.makeconftest(
        """
        import pytest
        from sqlalchemy import select
        from shaped import Note

        @pytest.fixture(scope="session")
        def db_seed():
            def seed(session):
                assert list(session.exec(select(Note))) == []  # AppSession's own method
                session.add(Note(text="seeded"))
            return seed
        """
    )
    shaped.makepyfile(
        test_seeded="def test_there(client): assert client.get('/notes').json() == ['seeded']"
    )
    run(shaped).assert_outcomes(passed=1)


def test_a_sync_app_never_needs_sqlalchemys_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its import needs greenlet, which a sync app need not have installed."""
    monkeypatch.delitem(sys.modules, "sqlalchemy.ext.asyncio", raising=False)
    assert SessionFactory(sessionmaker()).is_async is False
    assert "sqlalchemy.ext.asyncio" not in sys.modules


def test_without_a_dependency_to_override_the_bound_sessionmaker_is_enough(
    shaped: pytest.Pytester,
) -> None:
    # Apps whose dependency hands out the sessionmaker itself: nothing to override.
    shaped.makeini(SHAPED_INI.replace("fastapi_db_dependency = shaped:get_db\n", ""))
    shaped.makepyfile(
        test_bound_only="""
        from shaped import Note

        def test_writes_join_the_test_transaction(client, db_session):
            client.post("/notes", params={"text": "through SessionLocal"})
            assert [n.text for n in db_session.query(Note)] == ["through SessionLocal"]

        def test_and_are_rolled_back(client):
            assert client.get("/notes").json() == []
        """
    )
    run(shaped, "-p", "randomly").assert_outcomes(passed=2)
