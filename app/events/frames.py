"""WebSocket frames built once by the app and written as they are by the server.

A server's frames to a client are not masked (RFC 6455, section 5.1) and, without extensions
such as per-message compression, carry nothing of the connection they go out on: one event
frame serves every subscriber. A server that can write such frames offers a `FrameWriter`
in the connection's scope under FRAME_WRITER_EXTENSION (app.server does); under any other
server the app sends text messages the ASGI way.
"""

from collections.abc import Mapping
from typing import Any, Protocol

FRAME_WRITER_EXTENSION = "resource_api.frame_writer"

_TEXT_FINAL = 0x81  # FIN bit and the text opcode


class FrameWriter(Protocol):
    def write_frames(self, frames: bytes) -> None:
        """Write whole, unmasked server frames now, after whatever went before; nothing once
        the connection is closing."""

    def buffered_bytes(self) -> int:
        """What was written and has not reached the client's socket yet."""


def text_frame(text: str) -> bytes:
    payload = text.encode()
    size = len(payload)
    if size < 126:
        head = bytes((_TEXT_FINAL, size))
    elif size < 1 << 16:
        head = bytes((_TEXT_FINAL, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((_TEXT_FINAL, 127)) + size.to_bytes(8, "big")
    return head + payload


def frame_writer(scope: Mapping[str, Any]) -> FrameWriter | None:
    """The connection's frame writer, if its server offers one."""
    offered = scope.get("extensions", {}).get(FRAME_WRITER_EXTENSION)
    return offered["writer"] if offered else None
