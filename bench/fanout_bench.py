"""What live subscribers cost a writer: writes/s, server CPU per write, and how late the last
subscriber hears each write, with none and with N subscribers, in the same run; "in order":
every subscriber received the same bytes (so the same creations in the same order).

    .venv/bin/python -m bench.fanout_bench [--subscribers 1000] [--seconds 5] [--writers 4]

The server is `resource-api serve` on a temp SQLite file (or BENCH_DATABASE_URL), pinned to
the first core where there are two; the writers run here and the subscribers in a process
of their own, both on the other core. Delivery latency runs from sending a write to the last
subscriber receiving its event.
"""

import argparse
import asyncio
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from app.events.broker import FAN_OUT_PAUSE
from bench.http_bench import UNLIMITED
from bench.load import LOAD_CORE, SERVER_CORE, pin
from bench.parser_bench import cpu_seconds
from tests.servers import register_and_log_in, run_cli, running_server, server_env, server_rss_mib

SUBSCRIBE = json.dumps({"type": "subscribe", "channel": "updates"})


class Listener(asyncio.Protocol):
    """One subscriber on a bare socket, the handshake parsed by hand, so that a thousand of
    them keep up with the server on one core (the websockets client, at about 30 µs a frame,
    fell seconds behind and measured itself). Once `recording`, each chunk costs a time, a
    length and a CRC: every subscriber must receive the same bytes, so one of them (the
    `keeper`) keeps its bytes, whose frames say at which length each creation's event is
    whole, and the others' CRCs say they received just that. Parsing each chunk as it came
    (~15 KB a pass, for each of a thousand sockets) made the last socket read its events
    tens of milliseconds after they arrived, and keeping every socket's bytes took GBs."""

    def __init__(self, handshake: bytes, keeper: bool) -> None:
        self.handshake = handshake
        self.keeper = keeper
        self.head = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.recording = False
        self.arrivals: list[tuple[float, int]] = []  # when, and the length received by then
        self.length = 0
        self.crc = 0
        self.kept: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.handshake)

    def data_received(self, data: bytes) -> None:
        if self.recording:
            self.length += len(data)
            self.arrivals.append((time.time(), self.length))
            self.crc = zlib.crc32(data, self.crc)
            if self.keeper:
                self.kept.append(data)
        elif not self.upgraded.done():  # what follows the head before recording: the reply
            self.head += data
            if b"\r\n\r\n" in self.head:
                self.upgraded.set_result(self.head.startswith(b"HTTP/1.1 101"))

    def heard_at(self, ends: list[tuple[int, int]]) -> dict[int, float]:
        """For each (length at which a creation's event is whole, its id): when it was."""
        heard, arrival = {}, 0
        for whole_at, resource_id in ends:
            while arrival < len(self.arrivals) and self.arrivals[arrival][1] < whole_at:
                arrival += 1
            if arrival == len(self.arrivals):
                break
            heard[resource_id] = self.arrivals[arrival][0]
        return heard


def event_ends(stream: bytes) -> list[tuple[int, int]]:
    """Each creation's event in a subscriber's stream: the length at which it is whole, its id."""
    ends, start = [], 0
    for end in frame_ends(stream):
        found = CREATED_ID.search(stream, start, end)
        if found:
            ends.append((end, int(found.group(1))))
        start = end
    return ends


def frame_ends(buffer: bytes) -> Iterator[int]:
    """Where each whole frame in `buffer` ends (server frames: unmasked)."""
    position, size = 0, len(buffer)
    while size - position >= 2:
        length, head = buffer[position + 1], 2
        if length == 126:
            length, head = int.from_bytes(buffer[position + 2 : position + 4]), 4
        elif length == 127:
            length, head = int.from_bytes(buffer[position + 2 : position + 10]), 10
        if position + head + length > size:
            return
        position += head + length
        yield position


CREATED_ID = re.compile(
    rb'"type": "resource\.created", "channel": "updates", "data": \{"id": (\d+)'
)


def masked_text_frame(text: str) -> bytes:
    payload, mask = text.encode(), os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + masked


async def subscribe_all(url: str, token: str, count: int) -> None:
    """The subscriber process: `count` sockets; prints `ready`, then at EOF on stdin, per
    resource id, how many sockets heard its creation and when the last one did, and whether
    every socket received the same bytes."""
    gc.disable()  # its pauses over what is kept would count as delivery time
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    handshake = (
        f"GET /ws/updates HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    listeners = []
    for number in range(count):
        _, listener = await loop.create_connection(
            lambda keeper=number == 0: Listener(handshake, keeper), host, int(port)
        )
        assert await listener.upgraded, "the server refused the WebSocket handshake"
        listener.transport.write(masked_text_frame(SUBSCRIBE))
        listeners.append(listener)
    await asyncio.sleep(1)  # the replies
    for listener in listeners:
        listener.recording = True
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    await asyncio.sleep(1)  # the last events in flight
    for listener in listeners:
        listener.transport.close()
    stream = b"".join(listeners[0].kept)
    ends = event_ends(stream)
    kept = (len(stream), zlib.crc32(stream))
    same = all((each.length, each.crc) == kept for each in listeners)
    heard: dict[int, list[float]] = {}  # id → [count, last time]
    for listener in listeners:
        for resource_id, when in listener.heard_at(ends).items():
            seen = heard.setdefault(resource_id, [0, 0.0])
            seen[0] += 1
            seen[1] = max(seen[1], when)
    print(json.dumps({"heard": heard, "in_order": same, "bytes": len(stream)}), flush=True)


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
    result = {
        "subscribers": subscribers,
        "writes_per_second": len(sent) / elapsed,
        "cpu_us_per_write": (cpu_seconds(server.pid) - cpu_before) / len(sent) * 1e6,
        "rss_mib": max(rss_before, server_rss_mib(server.pid)),
    }
    if listeners is not None:
        # The subscribers' share of their core: near 1, they measure themselves.
        listeners_cpu = cpu_seconds(listeners.pid) - listeners_cpu_before
        result["subscribers_cpu_share"] = listeners_cpu / elapsed
        output, _ = listeners.communicate("", timeout=120)
        report = json.loads(output.strip().splitlines()[-1])
        heard = {int(key): value for key, value in report["heard"].items()}
        late = sorted((heard[i][1] - when[0]) * 1000 for i, when in sent.items() if i in heard)
        after_201 = sorted((heard[i][1] - when[1]) * 1000 for i, when in sent.items() if i in heard)
        writes = sorted((ended - started) * 1000 for started, ended in sent.values())
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
            "write_p50_ms": statistics.median(writes),
            "write_p99_ms": percentile(writes, 0.99),
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

    floor = bare_floor(args.subscribers, results[1])
    print(json.dumps([*results, floor], indent=2))
    print()  # bench.run takes what follows: the summary and the profile
    print("\n".join(summary(*results, floor)))


def bare_floor(subscribers: int, measured: dict) -> dict:
    """bench.baselines.bare_fanout: the same bytes a pass wrote, by bare sends, as often."""
    gap_ms = 1000 / measured["passes_per_second"] - measured["pass_ms_mean"]
    command = [sys.executable, "-m", "bench.baselines.bare_fanout", "--sockets", str(subscribers)]
    command += ["--bytes", str(round(measured["bytes_per_pass"])), "--gap-ms", f"{gap_ms:.1f}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(done.stdout))


def summary(none: dict, some: dict, floor: dict) -> list[str]:
    """The result, then what the delivery time is made of (the profile behind the p99)."""
    ratio = some["writes_per_second"] / none["writes_per_second"]
    cycle = 1000 / some["passes_per_second"]
    # At the rate's line (80%) passes could take a fifth of the core: one every five passes.
    floor_wait = 5 * floor["pass_ms_mean"] + floor["pass_ms_mean"]
    return [
        f"writes/s: {none['writes_per_second']:.0f} without subscribers, "
        f"{some['writes_per_second']:.0f} with {some['subscribers']} (ratio {ratio:.2f}); "
        f"CPU/write {none['cpu_us_per_write']:.0f} → {some['cpu_us_per_write']:.0f} µs; "
        f"delivery p50 {some['delivery_p50_ms']:.1f} ms, p99 {some['delivery_p99_ms']:.1f} ms "
        f"(after the 201: {some['after_201_p50_ms']:.1f}, {some['after_201_p99_ms']:.1f}; "
        f"the write itself: {some['write_p50_ms']:.1f}, {some['write_p99_ms']:.1f}); "
        f"RSS {some['rss_mib']:.0f} MiB; complete {some['complete']}, in order {some['in_order']}",
        "",
        f"- A pass wrote {some['bytes_per_pass'] / 1000:.1f} KB to each of "
        f"{some['subscribers']} subscribers in {some['pass_ms_mean']:.1f} ms (mean; "
        f"`fan_out_pass_seconds`), {some['passes_per_second']:.1f} passes a second, "
        f"{some['pass_share']:.0%} of the server's time. The same bytes by bare `send()` from "
        f"a process on the same core (`bench.baselines.bare_fanout`, the kernel's floor): "
        f"{floor['pass_ms_mean']:.1f} ms (median {floor['pass_ms_median']:.1f}); ours "
        f"{some['pass_ms_mean'] / floor['pass_ms_mean']:.2f}× that.",
        f"- An event waits for the next pass, one every {cycle:.0f} ms (a pass, then "
        f"{FAN_OUT_PAUSE} times the passes' cost for the requests, which keeps the writes' "
        "rate), and then its whole pass, for the last subscriber. Passes a fifth of the core "
        "(the rate's 80% line) at the floor's cost would still leave an event up to "
        f"{floor_wait:.0f} ms after its 201, before the write's own time; only cheaper sends "
        "per subscriber (on a network the receiver's TCP work is not the sender's; on "
        "loopback it is) or more cores (`--workers N` with `BROKER_URL`, each worker fanning "
        "out to its own subscribers) bring that down.",
    ]


if __name__ == "__main__":
    main()
