"""The floor under a fan-out pass: the same bytes written to as many loopback TCP sockets by
bare `send()` calls, from a process on the server's core, while a process on the load core
reads every socket as its bytes come. No framework, no event loop, no WebSocket: what
the kernel charges a sender on this machine (on loopback that includes the receiver's TCP
work), which no server of one process on one core can go below.

    .venv/bin/python -m bench.baselines.bare_fanout --sockets 1000 --bytes 15000

Prints JSON: the mean and median wall time of a pass. The first passes are left out: over
fresh sockets the receiver acknowledges every segment at once (TCP's quick acks), and on
loopback the sender pays for that too, so passes take two or three times as long until about
the fifteenth; the server's sockets are warmed up likewise before its passes are measured.
"""

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time

from bench.load import LOAD_CORE, SERVER_CORE, pin

WARM_PASSES = 15


def read_all(port: int, sockets: int) -> None:
    """The reading side: every socket's bytes taken as they come, until the writer closes."""
    connected = [socket.create_connection(("127.0.0.1", port)) for _ in range(sockets)]
    selector = selectors.DefaultSelector()
    for each in connected:
        each.setblocking(False)
        selector.register(each, selectors.EVENT_READ)
    print("ready", flush=True)
    while selector.get_map():
        for key, _ in selector.select():
            try:
                if not key.fileobj.recv(1 << 17):  # type: ignore[union-attr]
                    selector.unregister(key.fileobj)
            except BlockingIOError:
                continue


def passes(sockets: int, size: int, count: int, gap: float) -> list[float]:
    """`count` passes, each `size` bytes to every socket, `gap` seconds apart: their times."""
    listening = socket.create_server(("127.0.0.1", 0), backlog=sockets)
    port = listening.getsockname()[1]
    command = [sys.executable, "-m", __spec__.name, "--read", str(port)]
    reader = subprocess.Popen(
        [*command, "--sockets", str(sockets)], stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout is not None
    pin(reader.pid, LOAD_CORE)
    accepted = []
    for _ in range(sockets):
        connection, _ = listening.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as uvicorn's are
        accepted.append(connection)
    assert reader.stdout.readline().strip() == "ready"
    payload, took = os.urandom(size), []
    for _ in range(count):
        started = time.perf_counter()
        for connection in accepted:
            connection.sendall(payload)
        took.append(time.perf_counter() - started)
        time.sleep(gap)
    for connection in accepted:
        connection.close()
    reader.wait(timeout=30)
    return took[WARM_PASSES:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--bytes", type=int, default=15000)
    parser.add_argument("--passes", type=int, default=40)
    parser.add_argument("--gap-ms", type=float, default=80.0)
    parser.add_argument("--read", type=int, help=argparse.SUPPRESS)  # the reading process
    args = parser.parse_args()
    if args.read:
        read_all(args.read, args.sockets)
        return
    pin(0, SERVER_CORE)
    took = passes(args.sockets, args.bytes, args.passes + WARM_PASSES, args.gap_ms / 1000)
    result = {"pass_ms_mean": statistics.mean(took) * 1000}
    print(json.dumps(result | {"pass_ms_median": statistics.median(took) * 1000}))


if __name__ == "__main__":
    main()
