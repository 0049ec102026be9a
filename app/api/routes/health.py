from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import Broker, DbSession
from app.api.openapi import may_answer
from app.errors import DATABASE_UNAVAILABLE, ServiceUnavailable
from app.migrations import schema_is_current

SCHEMA_BEHIND = "Database schema is behind the code: run resource-api migrate"

router = APIRouter(tags=["health"])


@router.get("/health", operation_id="health-live")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", operation_id="health-ready")
@may_answer(503)
async def ready(session: DbSession, broker: Broker) -> dict[str, str | int]:
    """Readiness: the database answers and is migrated to the code's head (503 otherwise); the
    event broker's state is reported.

    A broker outage does not make the server unready: writes still succeed, only their live
    events are lost (and counted here).
    """
    try:
        await run_in_threadpool(session.execute, text("SELECT 1"))
        current = await run_in_threadpool(lambda: schema_is_current(session.connection()))
    except SQLAlchemyError:
        raise ServiceUnavailable(DATABASE_UNAVAILABLE) from None
    if not current:
        raise ServiceUnavailable(SCHEMA_BEHIND)
    return {
        "status": "ok",
        "database": "ok",
        "broker": "ok" if broker.connected else "unavailable",
        "events_lost": broker.lost_events,
    }
