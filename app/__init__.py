"""resource-api: user-owned resources over HTTP, with live updates."""
