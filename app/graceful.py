"""Graceful shutdown: live WebSockets are told 1001 (going away) before the server stops.

The ASGI server closes WebSockets itself on shutdown, with 1012, and only then runs the
lifespan shutdown, too late to say anything else. So the app chains its own step in front of
the server's SIGTERM/SIGINT handler: close the sockets with 1001, then let the server go on
(it stops accepting, lets in-flight requests finish, then runs the lifespan shutdown).
"""

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Goodbyes are quick to clients that read; the rest must not delay the shutdown.
CLOSE_TIMEOUT_SECONDS = 1.0


def chain_before_exit(close_sockets: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run `close_sockets` on SIGTERM/SIGINT before the server's own handler; returns an undo.

    Does nothing off the main thread (test clients run apps in threads; no signals there).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    tasks: set[asyncio.Task[None]] = set()

    async def close_then_exit(sig: int, frame: FrameType | None) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await close_sockets()
        except TimeoutError:
            logger.warning("some WebSockets did not close within %ss", CLOSE_TIMEOUT_SECONDS)
        handler: Any = previous[signal.Signals(sig)]
        if callable(handler):
            handler(sig, frame)
        else:
            raise SystemExit(128 + sig)

    def on_signal(sig: int, frame: FrameType | None) -> None:
        task = loop.create_task(close_then_exit(sig, frame))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for sig in SIGNALS:
        signal.signal(sig, on_signal)

    def undo() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return undo
