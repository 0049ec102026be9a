"""The subscribers of bench.fanout_bench: a process of their own, on the load core.

    python -m bench.fanout_subscribers ws://127.0.0.1:PORT/ws/updates --token T --subscribers N

Connects N sockets and prints `connected`; then, a line on stdin each: `subscribe` (every
socket subscribes; `ready` once all have their reply and record what follows), `report`
(after the last events in flight, every socket unsubscribes; JSON: per resource id, how many
sockets heard its creation and when the last one did, whether every socket received the same
bytes, and how many bytes that was). At EOF the sockets close. Between rounds the sockets
stay open and warm, so that the rounds without subscribers alternate with those with them.
"""

import argparse
import asyncio
import gc
import json
import os
import re
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any

SUBSCRIBE = json.dumps({"type": "subscribe", "channel": "updates"})
UNSUBSCRIBE = json.dumps({"type": "unsubscribe", "channel": "updates"})
IN_FLIGHT_SECONDS = 1.0  # after the last write, for its events to reach every socket


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
        self.reply: asyncio.Future[bytes] | None = None  # to a (un)subscribe, not recorded
        self.arrivals: list[tuple[float, int]] = []  # when, and the length received by then
        self.length = 0
        self.crc = 0
        self.kept: list[bytes] = []

    def say(self, message: str) -> "asyncio.Future[bytes]":
        self.reply = asyncio.get_running_loop().create_future()
        self.transport.write(masked_text_frame(message))
        return self.reply

    def record(self) -> None:
        self.arrivals, self.length, self.crc, self.kept = [], 0, 0, []
        self.recording = True

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
        elif not self.upgraded.done():
            self.head += data
            if b"\r\n\r\n" in self.head:
                self.upgraded.set_result(self.head.startswith(b"HTTP/1.1 101"))
        elif self.reply is not None and not self.reply.done():
            self.reply.set_result(data)

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


async def serve_rounds(url: str, token: str, count: int) -> None:
    """The subscriber process: `count` sockets, subscribed and reported on as stdin says."""
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
        listeners.append(listener)
    print("connected", flush=True)
    while command := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if command == "subscribe":
            replies = await asyncio.gather(*(each.say(SUBSCRIBE) for each in listeners))
            assert all(b'"subscribed"' in reply for reply in replies), replies[0]
            for listener in listeners:
                listener.record()
            print("ready", flush=True)
        elif command == "report":
            await asyncio.sleep(IN_FLIGHT_SECONDS)
            for listener in listeners:
                listener.recording = False
            await asyncio.gather(*(each.say(UNSUBSCRIBE) for each in listeners))
            print(json.dumps(report(listeners)), flush=True)
    for listener in listeners:
        listener.transport.close()


def report(listeners: list[Listener]) -> dict[str, Any]:
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
    return {"heard": heard, "in_order": same, "bytes": len(stream)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--token", required=True)
    parser.add_argument("--subscribers", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(serve_rounds(args.url, args.token, args.subscribers))


if __name__ == "__main__":
    main()
