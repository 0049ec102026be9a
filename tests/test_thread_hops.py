"""The hot routes each take one hop into the thread pool: the request's session is opened,
used (the caller found, the work done, the one commit) and closed in a single worker thread.
Each hop costs more than a small query; a route back on FastAPI's own sync dependencies
takes four or five, and fails here."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from app.services import users
from app.unit_of_work import UnitOfWork

URL = "/api/v1/resources"


class Hops:
    """Every hop into a thread (anyio's pool, or the connection gate's own threads), and the
    threads that did the work of a write."""

    def __init__(self) -> None:
        self.count = 0
        self.threads: dict[str, set[int]] = {"caller": set(), "commit": set()}


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Hops:
    seen = Hops()
    run_sync = anyio.to_thread.run_sync

    async def counted(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        seen.count += 1
        return await run_sync(function, *args, **kwargs)

    def noting(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def noted(*args: Any) -> Any:
            seen.threads[name].add(threading.get_ident())
            return function(*args)

        return noted

    submit = ThreadPoolExecutor.submit

    def submitted(executor: ThreadPoolExecutor, *args: Any, **kwargs: Any) -> Any:
        seen.count += 1
        return submit(executor, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    monkeypatch.setattr(ThreadPoolExecutor, "submit", submitted)
    monkeypatch.setattr(users, "caller_of", noting("caller", users.caller_of))
    monkeypatch.setattr(UnitOfWork, "commit", noting("commit", UnitOfWork.commit))
    return seen


def one_hop(hops: Hops, request: Callable[[], Any], status: int) -> None:
    hops.count = 0
    for threads in hops.threads.values():
        threads.clear()
    response = request()
    assert response.status_code == status, response.text
    assert hops.count == 1


def test_reads_take_one_hop(client: TestClient, auth_headers: dict, hops: Hops) -> None:
    created = client.post(URL, json={"name": "read me"}, headers=auth_headers).json()
    one_hop(hops, lambda: client.get(URL), 200)
    one_hop(hops, lambda: client.get(f"{URL}?mine=true", headers=auth_headers), 200)
    one_hop(hops, lambda: client.get(f"{URL}/{created['id']}"), 200)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "", {"name": "new"}, 201),
        ("POST", "/bulk", [{"name": "a"}, {"name": "b"}], 201),
        ("PUT", "/{id}", {"name": "replaced"}, 200),
        ("PATCH", "/{id}", {"name": "renamed"}, 200),
        ("DELETE", "/{id}", None, 204),
    ],
)
def test_writes_take_one_hop_and_commit_once_where_the_caller_was_found(
    client: TestClient,
    auth_headers: dict,
    hops: Hops,
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    existing = client.post(URL, json={"name": "existing"}, headers=auth_headers).json()
    url = URL + path.format(id=existing["id"])
    one_hop(hops, lambda: client.request(method, url, json=body, headers=auth_headers), status)
    assert len(hops.threads["caller"]) == 1
    assert hops.threads["commit"] == hops.threads["caller"]
    assert threading.get_ident() not in hops.threads["caller"]


def test_a_refused_write_commits_nothing(
    client: TestClient, auth_headers: dict, hops: Hops
) -> None:
    one_hop(
        hops, lambda: client.patch(f"{URL}/999999", json={"name": "x"}, headers=auth_headers), 404
    )
    assert hops.threads["commit"] == set()
