from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from app.api.deps import Broker, CurrentUser, DbSession
from app.api.rate_limiting import ReadLimit
from app.repositories import ResourceFilter, ResourceReads
from app.schemas import AccountSummary

router = APIRouter(tags=["summary"])


@router.get("/async-endpoint", response_model=AccountSummary, operation_id="summary-get")
async def account_summary(
    _limit: ReadLimit, user: CurrentUser, session: DbSession, broker: Broker
) -> AccountSummary:
    """An `async def` route: the blocking count runs in the thread pool, off the event loop."""
    mine = ResourceFilter(owner_ids=(user.id,))
    count = await run_in_threadpool(ResourceReads(session).count, mine)
    return AccountSummary(
        user_id=user.id, resource_count=count, live_subscribers=broker.subscriber_count
    )
