"""Anonymous reads during attacks, against the same reads without one, in the same run.

    .venv/bin/python -m bench.attack_bench [--seconds 8] [--json results.json]

A real server (`resource-api serve`, default settings, SQLite under a temp dir or
BENCH_DATABASE_URL) is read by an honest client at a steady pace while each attack runs from
this process over loopback:

- login flood: 500 anonymous logins at once, then more as answers come back;
- endless header: 20 sockets each streaming one header as fast as the server takes it;
- slow connections: 10,000 sockets, each sending a byte of a request head now and then.

It prints, for each, the honest reads' p50 / p99 / max and their errors, and the p99 as a
ratio to the baseline; `--json` writes the same. Everything targets 127.0.0.1 and stops by
itself.
"""

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from multiprocessing import Queue
from pathlib import Path

import httpx

from tests.servers import register_and_log_in, run_cli, running_server, server_env

READS_PER_SECOND = 20
BUILD_UP = 2.0  # seconds an attack runs before the honest reads begin
Attack = Callable[[str, asyncio.Event, Counter[str]], Awaitable[None]]


async def honest_reads(base: str, seconds: float) -> tuple[list[float], int]:
    """Reads at a steady pace, each on a new connection; latencies (s) and 5xx/failure count."""
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                response = await client.get("/api/v1/resources?limit=10")
            if response.status_code >= 500:
                errors += 1
        except httpx.HTTPError:
            errors += 1
        latencies.append(time.monotonic() - started)

    tasks = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(1 / READS_PER_SECOND)
    await asyncio.gather(*tasks)
    return latencies, errors


async def login_flood(base: str, stop: asyncio.Event, outcomes: Counter[str]) -> None:
    async def attacker(client: httpx.AsyncClient, n: int) -> None:
        while not stop.is_set():
            form = {"username": f"victim{n % 3}", "password": f"guess {n}"}
            try:
                response = await client.post("/api/v1/auth/token", data=form)
                outcomes[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1

    limits = httpx.Limits(max_connections=500)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        await asyncio.gather(*(attacker(client, n) for n in range(500)))


def _address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


async def endless_header(base: str, stop: asyncio.Event, outcomes: Counter[str]) -> None:
    async def attacker() -> None:
        while not stop.is_set():
            _reader, writer = await asyncio.open_connection(*_address(base))
            writer.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Endless: ")
            try:
                while not stop.is_set():
                    writer.write(b"a" * 4096)
                    await writer.drain()
                outcomes["still streaming at the end"] += 1
            except (ConnectionError, OSError):
                outcomes["cut by the server"] += 1
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

    await asyncio.gather(*(attacker() for _ in range(20)))


async def slow_connections(base: str, stop: asyncio.Event, outcomes: Counter[str]) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: localhost\r\n"

    async def attacker(n: int) -> None:
        await asyncio.sleep(n / 5000)  # open them over two seconds
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(*_address(base))
            except OSError as exc:
                outcomes[f"connect failed: {type(exc).__name__}"] += 1
                await asyncio.sleep(1)
                continue
            try:
                for byte in head:
                    if stop.is_set() or reader.at_eof():
                        break
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(2)
                outcomes["closed by the server" if reader.at_eof() else "held"] += 1
            except (ConnectionError, OSError):
                outcomes["closed by the server"] += 1
            finally:
                writer.close()

    await asyncio.gather(*(attacker(n) for n in range(10_000)))


ATTACKS: dict[str, Attack] = {
    "login flood (500 at once)": login_flood,
    "endless streamed header (20 sockets)": endless_header,
    "slow connections (10,000)": slow_connections,
}


def _attack_process(name: str, base: str, seconds: float, results: "Queue[dict[str, int]]") -> None:
    """The attack, in a process of its own so that its work does not slow the honest client."""
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (16384, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    )

    async def run() -> Counter[str]:
        stop = asyncio.Event()
        outcomes: Counter[str] = Counter()
        attacking = asyncio.create_task(ATTACKS[name](base, stop, outcomes))
        await asyncio.sleep(seconds)
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(attacking, 30)
        return outcomes

    results.put(dict(asyncio.run(run())))


def during(base: str, attack: str | None, seconds: float) -> dict[str, object]:
    outcomes: dict[str, int] = {}
    if attack:
        results: Queue[dict[str, int]] = multiprocessing.Queue()
        attacker = multiprocessing.Process(
            target=_attack_process, args=(attack, base, seconds + BUILD_UP, results)
        )
        attacker.start()
        time.sleep(BUILD_UP)
    latencies, errors = asyncio.run(honest_reads(base, seconds))
    if attack:
        outcomes = results.get(timeout=60)
        attacker.join(30)
    ms = sorted(latency * 1000 for latency in latencies)
    return {
        "reads": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
        "max_ms": round(ms[-1], 1),
        "errors": errors,
        "attack_outcomes": outcomes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{data_dir}/bench.db"
        env = server_env(Path(data_dir), database_url)
        # The server's own defaults, limits included; only its sign-ups here are many.
        for name in ("RATE_LIMIT_LOGIN_PER_ADDRESS", "RATE_LIMIT_REGISTRATIONS_PER_ADDRESS"):
            env.pop(name)
        assert run_cli(env, "migrate").returncode == 0
        with running_server(env) as server:
            for n in range(3):
                register_and_log_in(server.url, f"victim{n}")
            results = {"baseline (no attack)": during(server.url, None, args.seconds)}
            for name in ATTACKS:
                results[name] = during(server.url, name, args.seconds)
                time.sleep(2)  # the server settles before the next one

    baseline = results["baseline (no attack)"]["p99_ms"]
    print(
        f"{'honest anonymous reads during':38} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
        f" {'5xx':>4} {'p99 ratio':>9}"
    )
    for name, result in results.items():
        ratio = float(result["p99_ms"]) / float(baseline)  # type: ignore[arg-type]
        print(
            f"{name:38} {result['p50_ms']:>7} {result['p99_ms']:>7} {result['max_ms']:>7}"
            f" {result['errors']:>4} {ratio:9.2f}"
        )
        if result["attack_outcomes"]:
            print(f"{'':40}attack: {result['attack_outcomes']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
