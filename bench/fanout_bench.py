"""What live subscribers cost a writer: writes/s, server CPU per write, and how late the last
subscriber hears each write, with none and with N subscribers, in the same run (the same N
sockets are connected in both, subscribed or not; rounds of each kind alternate); "in order":
every subscriber received the same bytes (so the same creations in the same order).

    .venv/bin/python -m bench.fanout_bench [--subscribers 1000] [--seconds 5] [--writers 4]

The server is `resource-api serve` on a temp SQLite file (or BENCH_DATABASE_URL), pinned to
the first core where there are two; the writers run here and the subscribers in a process
of their own (bench.fanout_subscribers), both on the other core. Delivery latency runs from
sending a write to the last subscriber receiving its event.

Then the profile behind that latency: the server's fan-out passes (`fan_out_pass_seconds`:
how long, how often, how many bytes each), against the same bytes written by bare sends from
a process on the server's core (bench.baselines.bare_fanout), the kernel's floor.
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from app.events.broker import FAN_OUT_PAUSE
from bench.http_bench import UNLIMITED
from bench.load import LOAD_CORE, SERVER_CORE, pin
from bench.parser_bench import cpu_seconds
from tests.servers import register_and_log_in, run_cli, running_server, server_env, server_rss_mib


async def write_for(base: str, headers: dict[str, str], seconds: float, writers: int) -> dict:
    """Creations from `writers` concurrent clients for `seconds`, each on a kept-alive socket
    of its own, the request built once and the answer parsed by hand (httpx took ~1.8 ms of
    CPU a write, more than the server: with the subscribers on the same core, the writers
    measured themselves): id → when it was sent and when its 201 arrived."""
    sent: dict[int, tuple[float, float]] = {}
    deadline = time.monotonic() + seconds
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps({"name": "fan-out"}).encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST /api/v1/resources HTTP/1.1\r\nHost: {host}:{port}\r\n{head}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def writer() -> None:
        reader, stream = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < deadline:
                started = time.time()
                stream.write(request)
                answer_head = await reader.readuntil(b"\r\n\r\n")
                length = CONTENT_LENGTH.search(answer_head)
                assert length is not None, answer_head
                answer = await reader.readexactly(int(length.group(1)))
                assert answer_head.startswith(b"HTTP/1.1 201 "), answer_head + answer
                new_id = NEW_ID.search(answer)
                assert new_id is not None, answer
                sent[int(new_id.group(1))] = (started, time.time())
        finally:
            stream.close()

    await asyncio.gather(*(writer() for _ in range(writers)))
    return sent


CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")
NEW_ID = re.compile(rb'^\{"id":(\d+),')


WARM_UP_SECONDS = 1.0


def fan_out_passes(base: str) -> tuple[float, float]:
    """The server's fan-out passes so far (app.metrics): how many, and their seconds in all."""
    text = httpx.get(f"{base}/metrics").text
    found = dict(PASS_SAMPLE.findall(text))
    return float(found.get("count", 0)), float(found.get("sum", 0))


PASS_SAMPLE = re.compile(r"(?m)^fan_out_pass_seconds_(count|sum) (\S+)$")


def percentile(ordered: list[float], share: float) -> float:
    return ordered[max(int(len(ordered) * share) - 1, 0)]


def run_round(
    server: Any, headers: dict[str, str], listeners: "subprocess.Popen[str] | None", args: Any
) -> dict:
    """One round of writes, with every socket of `listeners` subscribed, or none if None."""
    if listeners is not None:
        assert ask(listeners, "subscribe") == "ready", "the subscribers failed"
        passes_recorded = fan_out_passes(server.url)[0]
    # A second's writes first, as every run of bench.load warms up: the first passes over a
    # thousand fresh sockets took half as long again as the later ones.
    asyncio.run(write_for(server.url, headers, WARM_UP_SECONDS, args.writers))
    rss_before = server_rss_mib(server.pid)
    cpu_before = cpu_seconds(server.pid)
    listeners_cpu_before = cpu_seconds(listeners.pid) if listeners else 0.0
    passes_before, pass_seconds_before = fan_out_passes(server.url)
    started = time.monotonic()
    sent = asyncio.run(write_for(server.url, headers, args.seconds, args.writers))
    elapsed = time.monotonic() - started
    passes, pass_seconds = fan_out_passes(server.url)
    passes, pass_seconds = passes - passes_before, pass_seconds - pass_seconds_before
    writes = sorted((ended - started) * 1000 for started, ended in sent.values())
    subscribers = args.subscribers if listeners is not None else 0
    result = {
        "subscribers": subscribers,
        "writes_per_second": len(sent) / elapsed,
        "write_p50_ms": statistics.median(writes),
        "write_p99_ms": percentile(writes, 0.99),
        "cpu_us_per_write": (cpu_seconds(server.pid) - cpu_before) / len(sent) * 1e6,
        "rss_mib": max(rss_before, server_rss_mib(server.pid)),
    }
    if listeners is not None:
        # The subscribers' share of their core: near 1, they measure themselves.
        listeners_cpu = cpu_seconds(listeners.pid) - listeners_cpu_before
        result["subscribers_cpu_share"] = listeners_cpu / elapsed
        report = json.loads(ask(listeners, "report"))
        heard = {int(key): value for key, value in report["heard"].items()}
        late = sorted((heard[i][1] - when[0]) * 1000 for i, when in sent.items() if i in heard)
        after_201 = sorted((heard[i][1] - when[1]) * 1000 for i, when in sent.items() if i in heard)
        result |= {
            "passes_per_second": passes / elapsed,
            "pass_ms_mean": pass_seconds / passes * 1000,
            "pass_share": pass_seconds / elapsed,  # of the server's time, the loop held
            "bytes_per_pass": report["bytes"] / (fan_out_passes(server.url)[0] - passes_recorded),
            "complete": all(heard.get(i, [0])[0] == subscribers for i in sent),
            "in_order": report["in_order"],
            "delivery_p50_ms": statistics.median(late),
            "delivery_p99_ms": percentile(late, 0.99),
            "after_201_p50_ms": statistics.median(after_201),
            "after_201_p99_ms": percentile(after_201, 0.99),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="of each kind, interleaved")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{data_dir}/bench.db"
        env = server_env(
            Path(data_dir),
            database_url,
            WS_CONNECTIONS_PER_USER=str(args.subscribers + 1),
            MAX_CONNECTIONS=str(args.subscribers + 100),
            ACCESS_LOG="false",
            # The sockets stay open for every round: the login checks, each socket's every
            # 30 s by default, would land in one round all at once; the subscribers answer
            # no keepalive ping (they do not parse what they receive), so none is sent.
            WS_REVALIDATE_SECONDS="3600",
            WS_PING_INTERVAL_SECONDS="0",
            **UNLIMITED,
        )
        assert run_cli(env, "migrate").returncode == 0
        with running_server(env) as server:
            pin(server.pid, SERVER_CORE)
            pin(0, LOAD_CORE)
            headers = register_and_log_in(server.url, "fanout")
            # This machine's speed wanders by tens of percent within a minute: rounds with
            # and without subscribers alternate, and each figure is the rounds' median.
            with subscribers_process(server.url, headers, args.subscribers) as listeners:
                rounds = [
                    run_round(server, headers, each, args)
                    for _ in range(args.rounds)
                    for each in (None, listeners)
                ]

    none, some = (
        medians([each for each in rounds if each["subscribers"] == n])
        for n in (0, args.subscribers)
    )
    floor = bare_floor(args.subscribers, some)
    print(json.dumps({"rounds": rounds, "floor": floor}, indent=2))
    print()  # bench.run takes what follows: the summary and the profile
    print("\n".join(summary(none, some, floor, args.rounds)))


@contextmanager
def subscribers_process(base: str, headers: dict[str, str], count: int) -> Iterator[Any]:
    """bench.fanout_subscribers on the load core: `count` sockets connected, not subscribed."""
    ws_url = base.replace("http://", "ws://") + "/ws/updates"
    token = headers["Authorization"].removeprefix("Bearer ")
    command = [sys.executable, "-m", "bench.fanout_subscribers", ws_url, "--token", token]
    with subprocess.Popen(
        [*command, "--subscribers", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as listeners:
        assert listeners.stdout is not None
        pin(listeners.pid, LOAD_CORE)
        connected = listeners.stdout.readline().strip()
        assert connected == "connected", f"the subscribers' process failed ({listeners.wait()})"
        yield listeners
    # Leaving the block closed their stdin: the sockets close, the process ends.


def ask(listeners: "subprocess.Popen[str]", command: str) -> str:
    """A command to the subscribers' process, and its one-line answer."""
    assert listeners.stdin is not None
    assert listeners.stdout is not None
    listeners.stdin.write(command + "\n")
    listeners.stdin.flush()
    return listeners.stdout.readline().strip()


def medians(rounds: list[dict]) -> dict:
    """Each number's median over the rounds; a yes only where every round says yes."""
    first = rounds[0]
    return {
        key: all(each[key] for each in rounds)
        if isinstance(value, bool)
        else statistics.median(each[key] for each in rounds)
        for key, value in first.items()
    }


def bare_floor(subscribers: int, measured: dict) -> dict:
    """bench.baselines.bare_fanout: the same bytes a pass wrote, by bare sends, as often."""
    gap_ms = 1000 / measured["passes_per_second"] - measured["pass_ms_mean"]
    command = [sys.executable, "-m", "bench.baselines.bare_fanout", "--sockets", str(subscribers)]
    command += ["--bytes", str(round(measured["bytes_per_pass"])), "--gap-ms", f"{gap_ms:.1f}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(done.stdout))


def summary(none: dict, some: dict, floor: dict, rounds: int) -> list[str]:
    """The result, then what the delivery time is made of: the profile behind its p99."""
    ratio = some["writes_per_second"] / none["writes_per_second"]
    cycle = 1000 / some["passes_per_second"]
    # An event published just after a pass waits the pause, then its own pass: at worst
    # FAN_OUT_PAUSE + 1 passes after its 201. At the rate's 80% line passes may take a fifth
    # of the core (a pause of 4), and at best they cost the floor's.
    ours = (FAN_OUT_PAUSE + 1) * some["pass_ms_mean"]
    best = 5 * floor["pass_ms_mean"]
    return [
        f"writes/s: {none['writes_per_second']:.0f} without subscribers, "
        f"{some['writes_per_second']:.0f} with {some['subscribers']:.0f} (ratio {ratio:.2f}); "
        f"CPU/write {none['cpu_us_per_write']:.0f} → {some['cpu_us_per_write']:.0f} µs; "
        f"delivery p50 {some['delivery_p50_ms']:.1f} ms, p99 {some['delivery_p99_ms']:.1f} ms "
        f"(after the 201: {some['after_201_p50_ms']:.1f}, {some['after_201_p99_ms']:.1f}); "
        f"RSS {some['rss_mib']:.0f} MiB; complete {some['complete']}, in order {some['in_order']} "
        f"(medians of {rounds} rounds of each, interleaved)",
        "",
        f"- A pass wrote {some['bytes_per_pass'] / 1000:.1f} KB to each of "
        f"{some['subscribers']:.0f} subscribers in {some['pass_ms_mean']:.1f} ms (mean; "
        f"`fan_out_pass_seconds`), {some['passes_per_second']:.1f} passes a second: "
        f"{some['pass_share']:.0%} of the server's time. The same bytes by bare `send()` from "
        f"a process on that core (`bench.baselines.bare_fanout`, the kernel's floor): "
        f"{floor['pass_ms_mean']:.1f} ms (median {floor['pass_ms_median']:.1f}); ours "
        f"{some['pass_ms_mean'] / floor['pass_ms_mean']:.2f} times that.",
        f"- Delivery is the write's own time (p99 {none['write_p99_ms']:.1f} ms without "
        f"subscribers, {some['write_p99_ms']:.1f} with), then the wait for the next pass (one "
        f"every {cycle:.0f} ms here: a pass, then {FAN_OUT_PAUSE} times the passes' cost for "
        "the requests, which keeps the writes' rate), then that whole pass, for the last "
        f"subscriber: {FAN_OUT_PAUSE + 1} passes after the 201 at worst, {ours:.0f} ms, when "
        "the loop is free as a pass falls due (later when a request holds it then). With "
        "passes at the floor's cost and a fifth of the core (the rate's 80% line), that would "
        f"be {best:.0f} ms. What moves it: passes nearer the floor, a shorter pause (at the "
        "cost of the rate), more cores (`--workers N` with `BROKER_URL`, each worker fanning "
        "out to its own subscribers), or a network, where the receiver's TCP work is the "
        "receiver's (on loopback the sender pays it).",
    ]


if __name__ == "__main__":
    main()
