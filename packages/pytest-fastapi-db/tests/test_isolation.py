"""Guarantee 1 and 2: a rolled-back transaction per test; real commits when asked for."""

import pytest
from kit_project import INI, run  # type: ignore[import-not-found]
from pytest_fastapi_db.blocker import DatabaseBlocker
from pytest_fastapi_db.databases import build_test_engine
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, func, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool


def test_what_one_test_commits_the_next_never_sees(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_two="""
        def test_first_commits(client):
            assert client.post("/items", params={"name": "a"}).status_code == 200
            assert client.get("/items/count").json() == {"count": 1}

        def test_second_starts_clean(client, db_session):
            from sqlalchemy import text
            assert client.get("/items/count").json() == {"count": 0}
            assert db_session.scalar(text("SELECT count(*) FROM items")) == 0
        """
    )
    run(project).assert_outcomes(passed=2)


def test_a_test_that_ends_the_outer_transaction_fails(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_leak="""
        from kitapp import Item

        def test_commits_the_connection_itself(db_session):
            db_session.add(Item(name="leak"))
            db_session.flush()
            db_session.connection().commit()
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*outer transaction ended before teardown*"])


def test_transactional_tests_commit_for_real_then_tables_are_emptied(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_transactional="""
        import pytest
        from sqlalchemy import text
        from sqlalchemy.orm import Session
        from kitapp import Item

        @pytest.mark.db(transaction=True)
        def test_commits_are_visible_to_other_connections(db_session, db_engine):
            db_session.add(Item(name="real"))
            db_session.commit()
            with Session(db_engine) as elsewhere:
                assert elsewhere.scalar(text("SELECT count(*) FROM items")) == 1

        @pytest.mark.db(transaction=True)
        def test_and_are_gone_afterwards(db_session):
            assert db_session.scalar(text("SELECT count(*) FROM items")) == 0
        """
    )
    run(project).assert_outcomes(passed=2)


def test_rollback_then_transactional_then_database_free(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_order="""
        import pytest

        def test_no_database():
            pass

        @pytest.mark.db(transaction=True)
        def test_transactional():
            pass

        def test_rollback(db_session):
            pass
        """
    )
    result = run(project, "-v")
    result.stdout.fnmatch_lines(
        ["*test_rollback PASSED*", "*test_transactional PASSED*", "*test_no_database PASSED*"]
    )


def _leaks(engine) -> int:  # type: ignore[no-untyped-def]
    """SQLAlchemy's recipe: commit inside a joined session, then roll the outer transaction back."""
    items = Table("items", MetaData(), Column("id", Integer, primary_key=True))
    items.create(engine)
    with engine.connect() as connection:
        outer = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        session.execute(items.insert())
        session.commit()
        session.close()
        outer.rollback()
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(items)) or 0


def test_on_sqlite_the_kit_installs_the_savepoint_fix(db_blocker: DatabaseBlocker) -> None:
    fixed = build_test_engine(create_engine("sqlite://").url)
    stock = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    with db_blocker.unblocked():
        assert _leaks(fixed) == 0
        assert _leaks(stock) == 1, "the stock driver mode leaks: the fix is what prevents it"


def test_async_sessions_roll_back_too(project: pytest.Pytester) -> None:
    project.makeini(INI + "asyncio_default_test_loop_scope = session\n")
    project.makepyfile(
        test_async_rollback="""
        import pytest
        from sqlalchemy import func, select
        from kitapp import Item

        @pytest.mark.asyncio
        async def test_commits(async_db_session):
            async_db_session.add(Item(name="async"))
            await async_db_session.commit()
            assert await async_db_session.scalar(select(func.count(Item.id))) == 1

        @pytest.mark.asyncio
        async def test_starts_clean(async_db_session):
            assert await async_db_session.scalar(select(func.count(Item.id))) == 0
        """
    )
    run(project).assert_outcomes(passed=2)
