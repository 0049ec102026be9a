"""Guarantees 8, 11, 12 and 13: after-commit capture, the network guard, per-example
savepoints, and the live server."""

import pytest
from kit_project import run  # type: ignore[import-not-found]


def test_commits_inside_the_test_transaction_are_observable(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_capture="""
        from kitapp import Item

        def test_records_each_commit(client, capture_after_commit):
            with capture_after_commit() as commits:
                client.post("/items", params={"name": "one"})
                client.post("/items", params={"name": "two"})
            assert [[item.name for item in c.created] for c in commits] == [["one"], ["two"]]
            assert [item.name for item in commits.created(Item)] == ["one", "two"]

        def test_a_rolled_back_write_records_nothing(db_session, capture_after_commit):
            with capture_after_commit() as commits:
                db_session.add(Item(name="never"))
                db_session.flush()
                db_session.rollback()
            assert commits == []
        """
    )
    run(project).assert_outcomes(passed=2)


def test_each_example_gets_its_own_savepoint(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_examples="""
        from hypothesis import HealthCheck, given, settings, strategies as st

        @settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(names=st.lists(st.text(min_size=1, max_size=5), max_size=3))
        def test_every_example_starts_empty(client, savepoint, names):
            with savepoint():
                assert client.get("/items/count").json() == {"count": 0}
                for name in names:
                    client.post("/items", params={"name": name})
                assert client.get("/items/count").json() == {"count": len(names)}
        """
    )
    run(project).assert_outcomes(passed=1)


def test_the_network_is_closed_except_to_loopback(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_network="""
        import socket
        import pytest

        def test_loopback_is_fine():
            with socket.socket() as server:
                server.bind(("127.0.0.1", 0))
                server.listen()
                with socket.create_connection(server.getsockname(), timeout=2):
                    pass

        def test_elsewhere_is_refused():
            with socket.socket() as sock:
                sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed, never reached
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*NetworkBlocked*mock external services at the HTTP layer*"])


def test_the_live_server_commits_for_real_and_cleans_up(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_live="""
        import httpx

        def test_over_a_real_socket(live_server):
            assert httpx.post(f"{live_server}/items", params={"name": "real"}).status_code == 200
            assert httpx.get(f"{live_server}/items/count").json() == {"count": 1}

        def test_tables_were_emptied(client):
            assert client.get("/items/count").json() == {"count": 0}
        """
    )
    result = run(project, "-v")
    result.assert_outcomes(passed=2)
    # Rollback tests run first, the live server's transactional ones after them.
    result.stdout.fnmatch_lines(["*test_tables_were_emptied PASSED*", "*test_over_a_real_socket*"])


def test_a_swallowed_network_refusal_still_fails_the_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_swallowed="""
        import contextlib
        import socket

        def test_a_library_that_swallows_errors():
            with contextlib.suppress(Exception), socket.socket() as sock:
                sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed, never reached

        def test_a_test_that_never_tried():
            pass
        """
    )
    result = run(project)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*192.0.2.1*was refused, and something caught the refusal*"])
