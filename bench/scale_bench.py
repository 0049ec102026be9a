"""The list at a million resources against the same requests at a thousand, in one run.

    .venv/bin/python -m bench.scale_bench [--rows 1000000] [--requests 200]

Two servers, one per database, seeded in SQL: `--rows` resources and 1000, every tenth of
another owner. The databases are SQLite files under a temp dir, or, with BENCH_POSTGRES_URL,
two PostgreSQL databases made next to its own (whose name must read as a test database's:
`.../test_bench`). For each request it prints the median latency and the server CPU per
request on both, and their ratio: paging by key should not care how large the table is;
paging by position, deep, and counting do.
"""

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text

from app.api.paging import encode_cursor
from app.database import build_engine
from app.models import Resource
from bench.http_bench import UNLIMITED, bench_database
from bench.parser_bench import cpu_seconds
from tests.servers import Server, register_and_log_in, run_cli, running_server, server_env


def seed(database_url: str, rows: int, owner: int, other: int) -> None:
    """`rows` resources in one statement; every tenth is `other`'s."""
    engine = build_engine(database_url)
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    series = (
        "generate_series(1, :rows) AS n(i)"
        if engine.dialect.name == "postgresql"
        else "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)"
        " SELECT i FROM n) AS n"
    )
    metadata = "'{}'" if engine.dialect.name == "sqlite" else "'{}'::json"
    insert = (
        "INSERT INTO resources (name, description, metadata, owner_id, created_at, updated_at,"
        f" version) SELECT 'resource ' || i, NULL, {metadata},"
        f" CASE WHEN i % 10 = 0 THEN :other ELSE :owner END, :now, :now, 1 FROM {series}"
    )
    with engine.begin() as connection:
        connection.execute(text(insert), {"rows": rows, "owner": owner, "other": other, "now": now})
        if engine.dialect.name == "postgresql":
            connection.execute(text("ANALYZE resources"))
    engine.dispose()


@contextmanager
def seeded_server(data_dir: Path, database_url: str, rows: int) -> Iterator[Server]:
    env = server_env(data_dir, database_url, ACCESS_LOG="false", **UNLIMITED)
    assert run_cli(env, "migrate").returncode == 0
    with running_server(env) as server:
        register_and_log_in(server.url, "owner")
        register_and_log_in(server.url, "other")
        seed(database_url, rows, owner=1, other=2)
        yield server


LABELS = [
    "first page, by key (count=false)",
    "by cursor, 90% deep",
    "one owner's, by cursor, 90% deep",
    "by name, by cursor, 90% deep",
    "first page, by position (counted)",
    "by position, 90% deep",
]


def requests_for(rows: int) -> list[str]:
    """The paths of LABELS' requests on a table of `rows` resources."""
    deep = rows * 9 // 10
    cursor = encode_cursor("id", Resource(id=deep))  # ids run from 1: continues `deep` resources in
    # seed()'s names, in the order of the name index: the one 90% along, with its id.
    by_name = sorted((f"resource {i}", i) for i in range(1, rows + 1))[deep]
    name_cursor = encode_cursor("name", Resource(name=by_name[0], id=by_name[1]))
    return [
        "/api/v1/resources?limit=10&count=false",
        f"/api/v1/resources?limit=10&cursor={cursor}",
        f"/api/v1/resources?limit=10&owner_id=2&cursor={cursor}",
        f"/api/v1/resources?limit=10&sort=name&cursor={name_cursor}",
        "/api/v1/resources?skip=0&limit=10",
        f"/api/v1/resources?skip={deep}&limit=10",
    ]


async def timed(server: Server, path: str, count: int) -> tuple[float, float]:
    """Median milliseconds, and server CPU µs per request, over `count` requests in turn."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(5):
            assert (await client.get(path)).status_code == 200
        before = cpu_seconds(server.pid)
        latencies = []
        for _ in range(count):
            started = time.perf_counter()
            response = await client.get(path)
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
        cpu = (cpu_seconds(server.pid) - before) / count * 1e6
    return statistics.median(latencies), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    postgres = os.environ.get("BENCH_POSTGRES_URL")
    with tempfile.TemporaryDirectory() as data_dir, ExitStack() as servers:
        urls = {
            size: bench_database(Path(data_dir), f"scale_{size}", postgres=bool(postgres))
            for size in (1000, args.rows)
        }
        data = Path(data_dir)
        small = servers.enter_context(seeded_server(data / "small", urls[1000], 1000))
        large = servers.enter_context(seeded_server(data / "large", urls[args.rows], args.rows))
        print(
            f"{'request':36} {'ms @1k':>7} {'@' + format(args.rows, ','):>11} {'ratio':>6}"
            f" {'CPU µs @1k':>11} {'@large':>8} {'ratio':>6}"
        )
        paths = zip(LABELS, requests_for(1000), requests_for(args.rows), strict=True)
        for label, small_path, large_path in paths:
            small_ms, small_cpu = asyncio.run(timed(small, small_path, args.requests))
            large_ms, large_cpu = asyncio.run(timed(large, large_path, args.requests))
            print(
                f"{label:36} {small_ms:7.2f} {large_ms:11.2f} {large_ms / small_ms:6.2f}"
                f" {small_cpu:11.0f} {large_cpu:8.0f} {large_cpu / small_cpu:6.2f}"
            )


if __name__ == "__main__":
    main()
