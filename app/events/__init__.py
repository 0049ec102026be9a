"""Live change events: what they look like and how they fan out to subscribers."""
