"""Guarantees 3, 4, 5 and 9: the blocker, the test-database guard, overrides, teardown checks."""

import tempfile

import pytest
from kit_project import run  # type: ignore[import-not-found]
from pytest_fastapi_db import NotATestDatabase, assert_test_database


def test_a_test_that_did_not_ask_cannot_reach_the_database(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_blocked="""
        import pytest
        from sqlalchemy import text
        from kitapp import get_engine

        def test_sneaks_in():
            with get_engine().connect():
                pass

        def test_asks_with_the_fixture(db_session):
            assert db_session.execute(text("SELECT 1")).scalar() == 1

        @pytest.mark.db(transaction=True)
        def test_asks_with_the_marker(db_engine):
            with db_engine.connect() as connection:
                assert connection.execute(text("SELECT 1")).scalar() == 1
        """
    )
    result = run(project)
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*DatabaseAccessBlocked*use the `db_session` fixture*@pytest.mark.db*"]
    )


def test_code_that_bypasses_the_session_is_caught(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_bypass="""
        from kitapp import get_engine

        def test_opens_its_own_connection(db_session):
            with get_engine().connect():
                pass
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*bypassed the test session*"])


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://app@db.internal/production", "sqlite:////srv/app/app.db"]
)
def test_a_database_not_made_for_tests_is_refused(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    project.makepyfile(test_anything="def test_x(): pass")
    monkeypatch.setenv("TEST_DATABASE_URL", url)

    result = run(project)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*refuses to run tests against*"])


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
def test_test_databases_pass_the_guard(url: str) -> None:
    assert_test_database(url)


def test_the_guard_hides_passwords() -> None:
    with pytest.raises(NotATestDatabase) as refused:
        assert_test_database("postgresql+psycopg://u:secret@db.internal/production")
    assert "secret" not in str(refused.value)


def test_a_surviving_override_fails_the_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_overrides="""
        from kitapp import app, get_engine

        def fake_engine():
            return None

        def test_forgets_its_override(client):
            app.dependency_overrides[fake_engine] = lambda: None
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*left dependency override(s) behind: fake_engine*"])


def test_client_removes_only_its_own_override(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_overrides="""
        import pytest
        from kitapp import app

        def mine():
            return None

        @pytest.fixture
        def my_override():
            app.dependency_overrides[mine] = lambda: None
            yield
            assert mine in app.dependency_overrides, "the client removed an override not its own"
            del app.dependency_overrides[mine]

        def test_both(my_override, client):
            assert client.get("/items/count").json() == {"count": 0}
        """
    )
    run(project).assert_outcomes(passed=1)


def test_without_configuration_the_plugin_stays_out_of_the_way(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        from sqlalchemy import create_engine, text

        def test_uses_its_own_database():
            with create_engine("sqlite://").connect() as connection:
                assert connection.scalar(text("SELECT 1")) == 1
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_the_app_sees_the_test_database_before_any_conftest_runs(
    project: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('db')}/suite.db"
    monkeypatch.setenv("TEST_DATABASE_URL", url)
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app@db.internal/production")
    project.makeconftest(
        f"""
        import os

        SEEN_AT_IMPORT = os.environ["DATABASE_URL"]

        def test_conftest_saw_the_test_database():
            assert SEEN_AT_IMPORT == {url!r}
        """
    )
    project.makepyfile(
        test_env="""
        from conftest import test_conftest_saw_the_test_database as test_seen
        """
    )
    run(project).assert_outcomes(passed=1)
