from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import SignedIn
from app.api.openapi import may_answer
from app.api.rate_limiting import ReadLimit
from app.services import external_api

router = APIRouter(tags=["resources"])


@router.get("/resources/{resource_id:int}/external-data", operation_id="resources-external-data")
@may_answer(404, 503)
async def external_data(
    _limit: ReadLimit, resource_id: int, request: Request, _user: SignedIn
) -> dict[str, Any]:
    """The data the external service holds for this id: its reply `{"status": "success",
    "data": …}` gives `external_data`; its 404 is a 404; anything else (down, slow, another
    reply) is a 503. The answer does not depend on a resource of this id existing here.
    """
    # No database connection is held while the service is waited for.
    # Looked up on the module at call time, so that patching the class takes effect.
    shared: external_api.SharedHttpClient | None = request.app.state.http_client
    client = external_api.ExternalClient(http=shared.get() if shared else None)
    data = await external_api.fetch_external_data(client, resource_id)
    return {"resource_id": resource_id, "external_data": data}
