"""What the HTTP parser and our guards cost: our server against plain uvicorn on each parser.

    .venv/bin/python -m bench.parser_bench [--seconds 3] [--rounds 3] [--concurrency 16]

The same app on the same database, served three times: `resource-api serve` (httptools, with
the head cap, deadlines and connection cap of app.server), and `uvicorn --http httptools` and
`uvicorn --http h11` (no such limits). Rounds alternate between them; for each route it
prints the medians of req/s and of server CPU per request (from /proc), and ours as a ratio
to each.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.http_bench import UNLIMITED, rate
from tests.servers import (
    Server,
    free_port,
    register_and_log_in,
    run_cli,
    running_server,
    server_env,
)

ROUTES = {
    "GET /health": "/health",
    "GET /resources?limit=10": "/api/v1/resources?limit=10",
}


@contextmanager
def plain_uvicorn(env: dict[str, str], parser: str) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--http", parser]
    process = subprocess.Popen([*command, "--port", str(port), "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield Server(url, process.pid)
    finally:
        process.terminate()
        process.wait(15)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server: Server, path: str, seconds: float, concurrency: int) -> tuple[float, float]:
    """req/s, and server CPU µs per request."""
    before = cpu_seconds(server.pid)
    started = time.monotonic()
    done = asyncio.run(rate(server.url, {}, lambda c, _i: c.get(path), seconds, concurrency))
    elapsed = time.monotonic() - started
    requests = done * elapsed
    return done, (cpu_seconds(server.pid) - before) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{data_dir}/bench.db"
        env = server_env(Path(data_dir), database_url, **UNLIMITED)
        assert run_cli(env, "migrate").returncode == 0
        with (
            running_server(env) as ours,
            plain_uvicorn(env, "httptools") as httptools,
            plain_uvicorn(env, "h11") as h11,
        ):
            servers = {"ours": ours, "httptools": httptools, "h11": h11}
            headers = register_and_log_in(ours.url, "bench")
            seed = [{"name": f"seed {n}"} for n in range(100)]
            httpx.post(f"{ours.url}/api/v1/resources/bulk", json=seed, headers=headers)
            for _ in range(args.rounds):
                for name, server in servers.items():
                    for route, path in ROUTES.items():
                        result = measure(server, path, args.seconds, args.concurrency)
                        results.setdefault((route, name), []).append(result)

    print(f"{'route':26} {'server':16} {'req/s':>8} {'CPU µs/req':>11}")
    for route in ROUTES:
        medians = {}
        for name in servers:
            runs = results[(route, name)]
            medians[name] = (
                statistics.median(r for r, _ in runs),
                statistics.median(c for _, c in runs),
            )
            req_s, cpu = medians[name]
            print(f"{route:26} {name:16} {req_s:8.0f} {cpu:11.0f}")
        for plain in ("httptools", "h11"):
            throughput = medians["ours"][0] / medians[plain][0]
            cpu_ratio = medians["ours"][1] / medians[plain][1]
            print(f"{route:26} {'ours ÷ ' + plain:16} {throughput:8.2f} {cpu_ratio:11.2f}")


if __name__ == "__main__":
    main()
