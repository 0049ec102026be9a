"""GET /metrics: what an operator's Prometheus scrapes (app.metrics). Outside the API's
document: it speaks Prometheus' text formats, not JSON."""

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from app.errors import NotAuthenticated
from app.metrics import exposition
from app.settings import Settings

router = APIRouter(tags=["operations"])


def _authorized(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "").encode()
    return hmac.compare_digest(given, f"Bearer {token}".encode())


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Every metric, as Prometheus text or OpenMetrics (by `Accept`). With METRICS_TOKEN set,
    only for `Authorization: Bearer <METRICS_TOKEN>`."""
    settings: Settings = request.app.state.settings
    if settings.metrics_token and not _authorized(request, settings.metrics_token):
        raise NotAuthenticated("Metrics need the metrics token")
    # With several workers this reads every worker's files: off the event loop.
    body, media_type = await run_in_threadpool(exposition, request.headers.get("accept", ""))
    return Response(body, media_type=media_type)
