from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import SignedIn
from app.api.rate_limiting import ReadLimit
from app.services import external_api

router = APIRouter(tags=["resources"])


@router.get("/resources/{resource_id}/external-data")
async def external_data(
    _limit: ReadLimit, resource_id: int, request: Request, _user: SignedIn
) -> dict[str, Any]:
    """The resource's data as the external service has it (503 when the service fails).

    No connection is held while the service is waited for."""
    # Looked up on the module at call time, so that patching the class takes effect.
    client = external_api.ExternalClient(http=request.app.state.http_client)
    data = await external_api.fetch_external_data(client, resource_id)
    return {"resource_id": resource_id, "external_data": data}
