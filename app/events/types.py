import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from app.events.frames import text_frame

EventType = Literal["resource.created", "resource.updated", "resource.deleted"]
UPDATES_CHANNEL = "updates"


@dataclass(frozen=True)
class Event:
    """A change, with the data it carries already serialized (it outlives the session)."""

    type: EventType
    data: dict[str, Any]

    def message(self) -> dict[str, Any]:
        return {"type": self.type, "channel": UPDATES_CHANNEL, "data": self.data}

    @cached_property
    def text(self) -> str:
        """The message as subscribers receive it: encoded once, for all of them."""
        return json.dumps(self.message())

    @cached_property
    def frame(self) -> bytes:
        """The message as a WebSocket frame, built once for all subscribers."""
        return text_frame(self.text)
