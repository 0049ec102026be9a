"""The ceiling: the same reads and writes as the API, served by a bare ASGI app straight on
the driver (sqlite3, or asyncpg on PostgreSQL), with no framework, no ORM, no auth, no limits.
What Python can do at all on this machine; our routes are measured as a fraction of it.

    DATABASE_URL=... uvicorn bench.baselines.ceiling:app

Routes: GET /api/v1/resources?skip&limit (the page and the total), GET /api/v1/resources/{id},
POST /api/v1/resources (owner 1), PATCH /api/v1/resources/{id}, and POST
/api/v1/resources/bulk by the driver's fastest insert (PostgreSQL's COPY, sqlite3's
executemany), answering only how many were made.
"""

import json
import os
import sqlite3
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

COLUMNS = "id, name, description, metadata, owner_id, version, created_at, updated_at"
PREFIX = "/api/v1/resources"
BULK_COLUMNS = [
    "name", "description", "metadata", "owner_id", "version", "created_at", "updated_at"
]  # fmt: skip


class Store:
    """One database, as the driver gives it."""

    def __init__(self, url: str) -> None:
        self.postgres = url.startswith("postgresql")
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self.pool: Any = None
        self.sqlite: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self.postgres:
            import asyncpg

            self.pool = await asyncpg.create_pool(self.url, min_size=5, max_size=10)
        else:
            path = self.url.removeprefix("sqlite:///")
            self.sqlite = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.sqlite.execute("PRAGMA journal_mode=WAL")

    async def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self.postgres:
            numbered = sql
            for index in range(len(args)):
                numbered = numbered.replace("?", f"${index + 1}", 1)
            return [dict(row) for row in await self.pool.fetch(numbered, *args)]
        assert self.sqlite is not None
        cursor = self.sqlite.execute(sql, args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    async def insert_many(self, items: list[dict[str, Any]], now: datetime) -> None:
        rows = [
            (item["name"], item.get("description"), json.dumps(item.get("metadata", {})))
            for item in items
        ]
        if self.postgres:
            records = [(*row, 1, 1, now, now) for row in rows]
            async with self.pool.acquire() as connection:
                await connection.copy_records_to_table(
                    "resources", records=records, columns=BULK_COLUMNS
                )
            return
        assert self.sqlite is not None
        stamp = now.isoformat(sep=" ")
        with self.sqlite:  # one transaction
            self.sqlite.execute("BEGIN")
            self.sqlite.executemany(
                f"INSERT INTO resources ({', '.join(BULK_COLUMNS)}) VALUES (?, ?, ?, 1, 1, ?, ?)",
                [(*row, stamp, stamp) for row in rows],
            )


def _shaped(row: dict[str, Any]) -> dict[str, Any]:
    metadata = row["metadata"]
    row["metadata"] = json.loads(metadata) if isinstance(metadata, str) else metadata
    for field in ("created_at", "updated_at"):
        if isinstance(row[field], datetime):
            row[field] = row[field].isoformat()
    return row


async def _answer(send: Any, status: int, body: Any, headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    start = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": start + headers})
    await send({"type": "http.response.body", "body": payload})


async def _body(receive: Any) -> Any:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return json.loads(b"".join(chunks) or b"{}")


async def _route(store: Store, scope: dict[str, Any], receive: Any, send: Any) -> None:
    method, path = scope["method"], scope["path"]
    now = datetime.now(UTC).replace(tzinfo=None)
    if path == PREFIX and method == "GET":
        query = parse_qs(scope["query_string"].decode())
        skip, limit = int(query.get("skip", ["0"])[0]), int(query.get("limit", ["10"])[0])
        page = await store.rows(
            f"SELECT {COLUMNS} FROM resources ORDER BY id LIMIT ? OFFSET ?", limit, skip
        )
        total = (await store.rows("SELECT count(*) AS n FROM resources"))[0]["n"]
        await _answer(
            send, 200, [_shaped(r) for r in page], [(b"x-total-count", str(total).encode())]
        )
    elif path == PREFIX + "/bulk" and method == "POST":
        items = await _body(receive)
        await store.insert_many(items, now)
        await _answer(send, 201, {"created": len(items)}, [])
    elif path == PREFIX and method == "POST":
        item = await _body(receive)
        sql = (
            "INSERT INTO resources (name, description, metadata, owner_id, version, created_at,"
            f" updated_at) VALUES (?, ?, ?, 1, 1, ?, ?) RETURNING {COLUMNS}"
        )
        metadata = json.dumps(item.get("metadata", {}))
        stamp: Any = now if store.postgres else now.isoformat(sep=" ")
        created = await store.rows(
            sql, item["name"], item.get("description"), metadata, stamp, stamp
        )
        await _answer(send, 201, _shaped(created[0]), [])
    elif path.startswith(PREFIX + "/") and path[len(PREFIX) + 1 :].isdigit():
        resource_id = int(path[len(PREFIX) + 1 :])
        if method == "PATCH":
            item = await _body(receive)
            stamp = now if store.postgres else now.isoformat(sep=" ")
            sql = (
                "UPDATE resources SET name = ?, updated_at = ?, version = version + 1"
                f" WHERE id = ? RETURNING {COLUMNS}"
            )
            found = await store.rows(sql, item["name"], stamp, resource_id)
        else:
            found = await store.rows(f"SELECT {COLUMNS} FROM resources WHERE id = ?", resource_id)
        if found:
            await _answer(send, 200, _shaped(found[0]), [])
        else:
            await _answer(send, 404, {"detail": "Resource not found"}, [])
    else:
        await _answer(send, 404, {"detail": "Not Found"}, [])


STORE = Store(os.environ.get("DATABASE_URL", ""))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await STORE.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await _route(STORE, scope, receive, send)
