"""What live subscribers cost a writer: writes/s, server CPU per write, and how late the last
subscriber hears each write, with none and with N subscribers, in the same run.

    .venv/bin/python -m bench.fanout_bench [--subscribers 1000] [--seconds 5] [--writers 4]

The server is `resource-api serve` on a temp SQLite file (or BENCH_DATABASE_URL), pinned to
the first core where there are two; the writers run here and the subscribers in a process
of their own, both on the other core. Delivery latency runs from sending a write to the last
subscriber receiving its event.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from bench.http_bench import UNLIMITED
from bench.load import LOAD_CORE, SERVER_CORE, pin
from bench.parser_bench import cpu_seconds
from tests.servers import register_and_log_in, run_cli, running_server, server_env, server_rss_mib

SUBSCRIBE = json.dumps({"type": "subscribe", "channel": "updates"})


async def subscribe_all(url: str, token: str, count: int) -> None:
    """The subscriber process: `count` sockets; prints `ready`, then at EOF on stdin, per
    resource id, how many sockets heard its creation and when the last one did."""
    heard: dict[int, list[float]] = {}  # id → [count, last time]
    in_order = True

    async def listen(socket: Any) -> None:
        nonlocal in_order
        last_id = 0
        async for frame in socket:
            event = json.loads(frame)
            if event["type"] != "resource.created":
                continue
            resource_id = event["data"]["id"]
            in_order = in_order and resource_id > last_id
            last_id = resource_id
            seen = heard.setdefault(resource_id, [0, 0.0])
            seen[0] += 1
            seen[1] = time.time()

    sockets = []
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(count):
        socket = await connect(url, additional_headers=headers, max_queue=None)
        await socket.send(SUBSCRIBE)
        assert json.loads(await socket.recv())["type"] == "subscribed"
        sockets.append(socket)
    listeners = [asyncio.create_task(listen(socket)) for socket in sockets]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await asyncio.sleep(1)  # the last events in flight
    for task in listeners:
        task.cancel()
    await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
    print(json.dumps({"heard": heard, "in_order": in_order}), flush=True)


async def write_for(base: str, headers: dict[str, str], seconds: float, writers: int) -> dict:
    """Creations from `writers` concurrent clients for `seconds`: id → when it was sent."""
    sent: dict[int, float] = {}
    deadline = time.monotonic() + seconds

    async def writer(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            started = time.time()
            response = await client.post("/api/v1/resources", json={"name": "fan-out"})
            assert response.status_code == 201, response.text
            sent[response.json()["id"]] = started

    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        await asyncio.gather(*(writer(client) for _ in range(writers)))
    return sent


def run_round(server: Any, headers: dict[str, str], subscribers: int, args: Any) -> dict:
    token = headers["Authorization"].removeprefix("Bearer ")
    ws_url = server.url.replace("http://", "ws://") + "/ws/updates"
    listeners = None
    if subscribers:
        command = [sys.executable, "-m", "bench.fanout_bench", "--listen", ws_url]
        listeners = subprocess.Popen(
            [*command, "--token", token, "--subscribers", str(subscribers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listeners.stdout is not None
        pin(listeners.pid, LOAD_CORE)
        ready = listeners.stdout.readline().strip()
        assert ready == "ready", f"the subscribers' process failed (exit {listeners.wait()})"
    rss_before = server_rss_mib(server.pid)
    cpu_before = cpu_seconds(server.pid)
    started = time.monotonic()
    sent = asyncio.run(write_for(server.url, headers, args.seconds, args.writers))
    elapsed = time.monotonic() - started
    result = {
        "subscribers": subscribers,
        "writes_per_second": len(sent) / elapsed,
        "cpu_us_per_write": (cpu_seconds(server.pid) - cpu_before) / len(sent) * 1e6,
        "rss_mib": max(rss_before, server_rss_mib(server.pid)),
    }
    if listeners is not None:
        output, _ = listeners.communicate("", timeout=120)
        report = json.loads(output.strip().splitlines()[-1])
        heard = {int(key): value for key, value in report["heard"].items()}
        late = sorted((heard[i][1] - when) * 1000 for i, when in sent.items() if i in heard)
        result |= {
            "complete": all(heard.get(i, [0])[0] == subscribers for i in sent),
            "in_order": report["in_order"],
            "delivery_p50_ms": statistics.median(late),
            "delivery_p99_ms": late[int(len(late) * 0.99) - 1] if len(late) > 1 else late[0],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--listen", help=argparse.SUPPRESS)  # the subscriber process
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.listen:
        asyncio.run(subscribe_all(args.listen, args.token, args.subscribers))
        return

    with tempfile.TemporaryDirectory() as data_dir:
        database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{data_dir}/bench.db"
        env = server_env(
            Path(data_dir),
            database_url,
            WS_CONNECTIONS_PER_USER=str(args.subscribers + 1),
            MAX_CONNECTIONS=str(args.subscribers + 100),
            ACCESS_LOG="false",
            **UNLIMITED,
        )
        assert run_cli(env, "migrate").returncode == 0
        with running_server(env) as server:
            pin(server.pid, SERVER_CORE)
            pin(0, LOAD_CORE)
            headers = register_and_log_in(server.url, "fanout")
            results = [run_round(server, headers, count, args) for count in (0, args.subscribers)]

    print(json.dumps(results, indent=2))
    none, some = results
    ratio = some["writes_per_second"] / none["writes_per_second"]
    print(
        f"writes/s: {none['writes_per_second']:.0f} without subscribers, "
        f"{some['writes_per_second']:.0f} with {args.subscribers} (ratio {ratio:.2f}); "
        f"CPU/write {none['cpu_us_per_write']:.0f} → {some['cpu_us_per_write']:.0f} µs; "
        f"delivery p50 {some['delivery_p50_ms']:.1f} ms, p99 {some['delivery_p99_ms']:.1f} ms; "
        f"RSS {some['rss_mib']:.0f} MiB; complete {some['complete']}, in order {some['in_order']}"
    )


if __name__ == "__main__":
    main()
