"""Memory under a long mixed load: does the server's RSS settle, or keep growing?

    .venv/bin/python -m bench.soak_bench [--minutes 10] [--clients 8]

One server (SQLite under a temp dir, or a fresh PostgreSQL database with BENCH_POSTGRES_URL)
pinned to one core; from the other, `--clients` clients loop over a mix of every kind of
request (lists by position and by key, one resource, create, update, bulk of 100, delete,
the caller, a missing resource, an invalid body) while a WebSocket subscriber listens. RSS is
read every few seconds; the report gives it at start (idle), after the first minute (warm)
and at the end, and the growth over the second half of the run. `--record` keeps the report
in bench/soak.json, which `make bench` shows with its date.
"""

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import websockets

from bench.http_bench import UNLIMITED, bench_database
from bench.load import LOAD_CORE, SERVER_CORE, pin
from tests.servers import register_and_log_in, run_cli, running_server, server_env, server_rss_mib

SAMPLE_SECONDS = 5.0
# Ten minutes do not fit in make bench's ten: it shows the last recorded run.
RECORD = Path(__file__).parent / "soak.json"


async def one_client(client: httpx.AsyncClient, number: int, deadline: float) -> list[int]:
    """Loops over the mix until the deadline: [answered, answered with a 5xx]."""
    answered = failed = 0
    mine: list[int] = []
    for step in itertools.count():
        if time.monotonic() >= deadline:
            return [answered, failed]
        kind = step % 10
        if kind == 0:
            response = await client.get("/api/v1/resources?skip=0&limit=10")
        elif kind == 1:
            response = await client.get("/api/v1/resources?count=false&limit=50")
        elif kind == 2 and mine:
            response = await client.get(f"/api/v1/resources/{mine[-1]}")
        elif kind == 3:
            response = await client.post("/api/v1/resources", json={"name": f"c{number}-{step}"})
            if response.status_code == 201:
                mine.append(response.json()["id"])
        elif kind == 4 and mine:
            body = {"metadata": {"step": step, "text": "x" * (step % 200)}}
            response = await client.patch(f"/api/v1/resources/{mine[-1]}", json=body)
        elif kind == 5 and step % 50 == 5:
            items = [{"name": f"b{step}-{n}", "metadata": {"n": n}} for n in range(100)]
            response = await client.post("/api/v1/resources/bulk", json=items)
        elif kind == 6 and len(mine) > 5:
            response = await client.delete(f"/api/v1/resources/{mine.pop(0)}")
        elif kind == 7:
            response = await client.get("/api/v1/users/me")
        elif kind == 8:
            response = await client.get("/api/v1/resources/999999999")
        else:
            response = await client.post("/api/v1/resources", json={"name": ""})
        answered += 1
        failed += response.status_code >= 500
    return [answered, failed]


async def listen(url: str, headers: dict[str, str], deadline: float) -> int:
    """A subscriber for the whole run; how many events it heard."""
    heard = 0
    async with websockets.connect(url, additional_headers=headers) as socket:
        await socket.send(json.dumps({"type": "subscribe", "channel": "updates"}))
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(socket.recv(), timeout=1)
                heard += 1
            except TimeoutError:
                continue
    return heard


async def soak(base: str, pid: int, headers: dict[str, str], args: argparse.Namespace) -> dict:
    deadline = time.monotonic() + args.minutes * 60
    samples: list[tuple[float, float]] = [(0.0, server_rss_mib(pid))]
    started = time.monotonic()

    async def sample() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(SAMPLE_SECONDS)
            samples.append((time.monotonic() - started, server_rss_mib(pid)))

    ws_url = base.replace("http://", "ws://") + "/ws/updates"
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        results = await asyncio.gather(
            sample(),
            listen(ws_url, headers, deadline),
            *(one_client(client, number, deadline) for number in range(args.clients)),
        )
    answered, failed = (sum(counts) for counts in zip(*results[2:], strict=True))
    return {"samples": samples, "heard": results[1], "answered": answered, "failed": failed}


def report(result: dict, minutes: float) -> str:
    samples: list[tuple[float, float]] = result["samples"]
    idle = samples[0][1]
    warm = next(rss for at, rss in samples if at >= 60) if minutes > 1 else samples[-1][1]
    half = next(rss for at, rss in samples if at >= minutes * 30)
    end = samples[-1][1]
    return (
        f"{minutes:g} minutes, {result['answered']} requests answered ({result['failed']} 5xx),"
        f" {result['heard']} events heard; RSS MiB: idle {idle:.1f}, after 1 minute {warm:.1f},"
        f" at half time {half:.1f}, at the end {end:.1f}; growth over the second half"
        f" {end - half:+.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--record", action="store_true", help=f"keep the report in {RECORD} for make bench"
    )
    args = parser.parse_args()
    postgres = bool(os.environ.get("BENCH_POSTGRES_URL"))
    with tempfile.TemporaryDirectory() as data_dir:
        url = bench_database(Path(data_dir), "soak", postgres=postgres)
        env = server_env(Path(data_dir), url, ACCESS_LOG="false", **UNLIMITED)
        assert run_cli(env, "migrate").returncode == 0
        with running_server(env) as server:
            pin(server.pid, SERVER_CORE)
            pin(0, LOAD_CORE)
            headers = register_and_log_in(server.url, "soak")
            result = asyncio.run(soak(server.url, server.pid, headers, args))
    line = report(result, args.minutes)
    print(line)
    if args.record:
        database = "PostgreSQL" if postgres else "SQLite"
        kept = {"date": f"{datetime.now(UTC):%Y-%m-%d}", "database": database, "report": line}
        RECORD.write_text(json.dumps(kept, indent=2) + "\n")


if __name__ == "__main__":
    main()
