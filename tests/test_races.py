"""Racing writes to one resource, over real sockets: every answer is an answer (200, 204 or
404, never a 5xx), and of racing deletes exactly one deletes and is announced. On PostgreSQL
in the PostgreSQL run; SQLite serialises its writers anyway."""

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect

ROUNDS = 25


async def deleted_events(websocket: object, expected: int) -> list[int]:
    """The ids announced as deleted, read until `expected` arrive or the socket goes quiet."""
    ids: list[int] = []
    while len(ids) < expected:
        try:
            message = json.loads(await asyncio.wait_for(websocket.recv(), 5))  # type: ignore[attr-defined]
        except TimeoutError:
            break
        if message["type"] == "resource.deleted":
            ids.append(message["data"]["id"])
    return ids


@pytest.mark.asyncio
async def test_racing_writes_are_answered_and_each_delete_happens_once(
    live_writer: tuple[str, dict[str, str]],
) -> None:
    base, headers = live_writer
    ws_url = base.replace("http://", "ws://") + "/ws/updates"
    async with (
        connect(ws_url, additional_headers=headers) as websocket,
        httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client,
    ):
        await websocket.send(json.dumps({"type": "subscribe", "channel": "updates"}))
        assert json.loads(await websocket.recv())["type"] == "subscribed"
        deleted_ids = []
        for _ in range(ROUNDS):
            created = await client.post("/api/v1/resources", json={"name": "contested"})
            url = f"/api/v1/resources/{created.json()['id']}"
            answers = await asyncio.gather(
                client.patch(url, json={"name": "patched"}),
                client.put(url, json={"name": "replaced"}),
                client.delete(url),
                client.delete(url),
            )
            statuses = [answer.status_code for answer in answers]
            assert set(statuses) <= {200, 204, 404}, [(a.status_code, a.text) for a in answers]
            assert statuses[2:].count(204) == 1, statuses
            deleted_ids.append(created.json()["id"])
        announced = await deleted_events(websocket, ROUNDS + 1)
    assert announced == deleted_ids  # each delete announced once, in order


@pytest.mark.asyncio
async def test_racing_writes_naming_one_version_let_exactly_one_through(
    live_writer: tuple[str, dict[str, str]],
) -> None:
    """Four editors who read the same version: one change lands, three get 412, every round."""
    base, headers = live_writer
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(ROUNDS):
            created = await client.post("/api/v1/resources", json={"name": "draft"})
            url = f"/api/v1/resources/{created.json()['id']}"
            seen = {"If-Match": created.headers["etag"]}
            answers = await asyncio.gather(
                *(client.patch(url, json={"name": f"by {i}"}, headers=seen) for i in range(4))
            )
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [200, 412, 412, 412], [answer.text for answer in answers]
            final = await client.get(url)
            assert final.json()["version"] == 2
