"""The request's unit of work: one commit per request, and events only after it."""

from sqlalchemy.orm import Session

from app.events.types import Event


class UnitOfWork:
    """Services record changes in `session` and queue events; the owner commits once.

    The owner (the `unit_of_work` dependency, or a CLI command) calls `commit()`; events
    queued by a transaction that rolls back are dropped, so nobody hears of a change that
    never happened.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._events: list[Event] = []

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def commit(self) -> list[Event]:
        """Commit, and hand back the events that may now be published."""
        self.session.commit()
        events, self._events = self._events, []
        return events

    def rollback(self) -> None:
        self._events.clear()
        self.session.rollback()
