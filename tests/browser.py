"""Headless Chromium, driven over the DevTools protocol with the `websockets` the app already
has: open a page, wait for what it shows, click. For the docs pages' browser test."""

import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

START_SECONDS = 30
# As this machine's probe starts it; and no host but loopback resolves, so a page that needs
# a CDN fails here as it would offline.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def chromium_path() -> str:
    """Debian's chromium: skipped where it is missing, but failed under CI (which installs it)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: CI must run the browser test")
        pytest.skip("install Debian's chromium to run the browser test")
    return path


class Page:
    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # events arrive in between; only the answer matters
            message = json.loads(self._socket.recv(timeout=START_SECONDS))
            if message.get("id") == call_id:
                assert "error" not in message, message["error"]
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, seconds: float = 20) -> Any:
        """The first truthy value of `expression`, evaluated until it comes."""
        deadline = time.monotonic() + seconds
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"never true: {expression}"
            time.sleep(0.1)
        return value

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)


@contextmanager
def chromium_page() -> Iterator[Page]:
    with tempfile.TemporaryDirectory() as profile:
        command = [chromium_path(), *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        # Its own process group, so that its helpers (renderer, crashpad…) stop with it.
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + START_SECONDS
            while not (port_file.exists() and port_file.read_text().strip()):
                assert process.poll() is None, "chromium exited on start"
                assert time.monotonic() < deadline, "chromium did not start"
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list").json()
            page = next(target for target in targets if target["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=None) as socket:
                yield Page(socket)
        finally:
            stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop chromium and every helper it started, and wait until none is left: a helper still
    writing into the profile would make removing it fail."""
    for stop_signal in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + 10
        try:
            os.killpg(process.pid, stop_signal)
            while time.monotonic() < deadline:
                process.poll()  # reaps the leader, which would otherwise linger as a zombie
                os.killpg(process.pid, 0)  # raises once the group is empty
                time.sleep(0.05)
        except ProcessLookupError:
            break
    process.wait(timeout=5)
