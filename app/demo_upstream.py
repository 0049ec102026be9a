"""A stand-in for the external service, so the tour and the black-box tests work end to end.

It speaks the reply contract external-data expects: `GET /resources/{id}` answers
`{"status": "success", "data": {…}}` (any JSON object as `data`), or 404 for an id it has no
data for. Not meant for production: it makes its data up from the id.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# Ids past this have no data here, so that a client can meet the upstream's 404 too.
KNOWN_IDS = 1_000_000


async def resource_data(request: Request) -> JSONResponse:
    resource_id: int = request.path_params["resource_id"]
    if not 1 <= resource_id <= KNOWN_IDS:
        return JSONResponse({"status": "error", "detail": "unknown resource"}, 404)
    data = {"resource_id": resource_id, "source": "demo-upstream", "score": resource_id % 100}
    return JSONResponse({"status": "success", "data": data})


app = Starlette(routes=[Route("/resources/{resource_id:int}", resource_data)])
