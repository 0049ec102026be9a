"""Throughput of the main routes over real sockets, as ratios to `/health` measured in the same run.

    .venv/bin/python -m bench.http_bench [--seconds 3] [--concurrency 16]

The server is `resource-api serve` on a fresh database (SQLite under a temp dir, or
BENCH_DATABASE_URL); absolute numbers swing with the machine, the ratios much less.
"""

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from tests.servers import register_and_log_in, run_cli, running_server, server_env

# Throughput is measured here, not the rate limits: one client must not be turned away.
UNLIMITED = {
    f"RATE_LIMIT_{name}": "1000000000/minute"
    for name in ("READS_PER_ADDRESS", "WRITES_PER_USER", "LOGIN_PER_ADDRESS")
}


def bench_database(data_dir: Path, name: str, postgres: bool) -> str:
    """A fresh database for a benchmark: a SQLite file in `data_dir`, or a PostgreSQL one
    named after BENCH_POSTGRES_URL's (`<its name>_<name>`, made empty)."""
    if not postgres:
        return f"sqlite:///{data_dir}/{name}.db"
    from pytest_fastapi_db.databases import fresh_postgres_database

    given = make_url(os.environ["BENCH_POSTGRES_URL"])
    fresh = fresh_postgres_database(given, f"{given.database}_{name}")
    return fresh.render_as_string(hide_password=False)


Request = Callable[[httpx.AsyncClient, int], "asyncio.Future[httpx.Response] | object"]


async def rate(
    base: str, headers: dict[str, str], make: Request, seconds: float, workers: int
) -> float:
    """Requests per second that `workers` concurrent clients complete in `seconds`."""
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            response = await make(client, done)  # type: ignore[misc]
            assert response.status_code < 300, response.text
            done += 1

    limits = httpx.Limits(max_connections=workers)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(workers)))
        return done / (time.monotonic() - started)


SCENARIOS: dict[str, Request] = {
    "GET /health (baseline)": lambda c, _i: c.get("/health"),
    "GET /resources?limit=100": lambda c, _i: c.get("/api/v1/resources?limit=100"),
    "GET /resources/{id}": lambda c, i: c.get(f"/api/v1/resources/{i % 100 + 1}"),
    "GET /users/me": lambda c, _i: c.get("/api/v1/users/me"),
    "POST /resources": lambda c, i: c.post("/api/v1/resources", json={"name": f"r{i}"}),
    "POST /resources/bulk (100)": lambda c, i: c.post(
        "/api/v1/resources/bulk", json=[{"name": f"b{i}-{n}"} for n in range(100)]
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{data_dir}/bench.db"
        env = server_env(
            Path(data_dir), database_url, PASSWORD_HASH_MEMORY_KIB="65536", **UNLIMITED
        )
        assert run_cli(env, "migrate").returncode == 0
        with running_server(env) as server:
            headers = register_and_log_in(server.url, "bench")
            seed = [{"name": f"seed {n}"} for n in range(100)]
            httpx.post(f"{server.url}/api/v1/resources/bulk", json=seed, headers=headers)
            rates = {
                name: asyncio.run(rate(server.url, headers, make, args.seconds, args.concurrency))
                for name, make in SCENARIOS.items()
            }

    baseline = rates["GET /health (baseline)"]
    print(f"{'scenario':32} {'req/s':>9} {'vs /health':>11}")
    for name, per_second in rates.items():
        print(f"{name:32} {per_second:9.0f} {per_second / baseline:11.2f}")


if __name__ == "__main__":
    main()
