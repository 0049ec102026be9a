"""Guarantees 7 and 10: query counting, and identities minted by the app's token function."""

import pytest
from kit_project import run  # type: ignore[import-not-found]


def test_query_counts_ignore_savepoints_and_list_the_sql_on_failure(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_counts="""
        from sqlalchemy import text

        def test_exact(db_session, assert_num_queries):
            with assert_num_queries(2):
                nested = db_session.begin_nested()
                db_session.execute(text("SELECT 1"))
                db_session.execute(text("SELECT 2"))
                nested.rollback()

        def test_at_most(db_session, assert_max_num_queries):
            with assert_max_num_queries(5):
                db_session.execute(text("SELECT 1"))

        def test_too_many(db_session, assert_num_queries):
            with assert_num_queries(1):
                db_session.execute(text("SELECT 1"))
                db_session.execute(text("SELECT 'the second one'"))
        """
    )
    result = run(project)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*expected 1 queries, ran 2 (SAVEPOINTs not counted):*",
            "*1. SELECT 1*",
            "*2. SELECT 'the second one'*",
        ]
    )


def test_tokens_valid_expired_tampered_and_unsigned(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_tokens="""
        import pytest

        def test_valid(client, user, auth_headers):
            response = client.get("/me", headers=auth_headers)
            assert response.json() == {"email": user.email}

        @pytest.mark.parametrize("kind", ["expired", "tampered", "unsigned"])
        def test_refused(client, user, tokens, kind):
            assert client.get("/me", headers=tokens.headers(user, kind)).status_code == 401

        def test_two_users(user, other_user):
            assert user.id != other_user.id
        """
    )
    run(project).assert_outcomes(passed=5)


def test_async_client_shares_the_test_session(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_async="""
        import pytest
        from kitapp import Item

        @pytest.mark.asyncio
        async def test_sees_uncommitted_test_data(async_client, db_session):
            db_session.add(Item(name="from the test"))
            db_session.commit()
            response = await async_client.get("/items/count")
            assert response.json() == {"count": 1}
        """
    )
    run(project).assert_outcomes(passed=1)
