from dataclasses import dataclass
from typing import Any, Literal

EventType = Literal["resource.created", "resource.updated", "resource.deleted"]
UPDATES_CHANNEL = "updates"


@dataclass(frozen=True, slots=True)
class Event:
    """A change, with the data it carries already serialized (it outlives the session)."""

    type: EventType
    data: dict[str, Any]

    def message(self) -> dict[str, Any]:
        return {"type": self.type, "channel": UPDATES_CHANNEL, "data": self.data}
