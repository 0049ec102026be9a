import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from todo_app.db import engine
from todo_app.main import Todo, count_open

ADA = {"X-Account": "ada"}
BOB = {"X-Account": "bob"}


@pytest.mark.asyncio
async def test_the_session_is_the_apps_async_kind(async_db_session):
    assert isinstance(async_db_session, AsyncSession)
    assert async_db_session.bind.dialect.driver == engine.dialect.driver  # the app's own driver


@pytest.mark.asyncio
async def test_create_and_list(async_client):
    created = await async_client.post("/todos", params={"title": "write"}, headers=ADA)
    assert created.status_code == 201
    listed = await async_client.get("/todos")
    assert [todo["title"] for todo in listed.json()] == ["write"]


def test_the_sync_client_works_for_an_async_app(client):
    assert client.post("/todos", params={"title": "sync"}, headers=ADA).status_code == 201
    assert [todo["title"] for todo in client.get("/todos").json()] == ["sync"]


@pytest.mark.asyncio
async def test_only_the_owner_finishes_a_todo(async_client):
    todo_id = (await async_client.post("/todos", params={"title": "x"}, headers=ADA)).json()["id"]
    assert (await async_client.post(f"/todos/{todo_id}/done", headers=BOB)).status_code == 403
    done = await async_client.post(f"/todos/{todo_id}/done", headers=ADA)
    assert done.json()["done"] is True


@pytest.mark.asyncio
async def test_unknown_callers_are_refused(async_client):
    response = await async_client.post("/todos", params={"title": "x"}, headers={"X-Account": "?"})
    assert response.status_code == 401


@pytest.mark.asyncio
async def test_the_apps_own_sessionmaker_sees_the_test_transaction(async_client):
    await async_client.post("/todos", params={"title": "open"}, headers=ADA)
    assert await count_open() == 1


@pytest.mark.asyncio
async def test_a_list_is_one_query(async_client, assert_num_queries):
    with assert_num_queries(1):
        await async_client.get("/todos")


@pytest.mark.asyncio
async def test_commits_are_captured(async_client, capture_after_commit):
    with capture_after_commit() as commits:
        await async_client.post("/todos", params={"title": "seen"}, headers=ADA)
    assert [todo.title for todo in commits.created(Todo)] == ["seen"]


@pytest.mark.asyncio
@pytest.mark.db(transaction=True)
async def test_a_transactional_test_commits_for_real(async_client, async_db_session):
    await async_client.post("/todos", params={"title": "durable"}, headers=ADA)
    await async_db_session.rollback()
    titles = (await async_db_session.scalars(select(Todo.title))).all()
    assert titles == ["durable"]


@pytest.mark.asyncio
async def test_every_test_starts_from_the_seed(async_client):
    assert (await async_client.get("/todos")).json() == []


def test_over_a_real_socket(live_server):
    created = httpx.post(f"{live_server}/todos", params={"title": "live"}, headers=ADA)
    assert created.status_code == 201
    assert [todo["title"] for todo in httpx.get(f"{live_server}/todos").json()] == ["live"]


@pytest.mark.asyncio
async def test_each_example_gets_a_savepoint_of_its_own(async_client, savepoint):
    for title in ("first", "second"):
        async with savepoint():
            await async_client.post("/todos", params={"title": title}, headers=ADA)
            listed = (await async_client.get("/todos")).json()
            assert [todo["title"] for todo in listed] == [title]
