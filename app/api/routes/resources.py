from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic_core import to_json

from app.api.conditional import (
    ETAG_HEADER,
    NOT_MODIFIED,
    IfMatch,
    IfNoneMatch,
    check_write,
    etag,
    not_modified,
    shown_etag,
)
from app.api.deps import BearerToken, Reads
from app.api.idempotency import Idempotency
from app.api.openapi import may_answer
from app.api.paging import CURSOR_PATTERN, Sort, decode_cursor, order_of, set_paging_headers
from app.api.planned import PlannedRoute
from app.api.rate_limiting import ReadLimit
from app.api.writes import Writes
from app.models import MAX_ID, NAME_MAX_LENGTH, Resource
from app.schemas import (
    BULK_MAX_ITEMS,
    RESOURCE,
    RESOURCE_LIST,
    STORABLE_PATTERN,
    ResourceCreate,
    ResourceOut,
    ResourcePatch,
)
from app.services import resources, users
from app.services.resources import Caller, Reading
from app.unit_of_work import UnitOfWork

router = APIRouter(prefix="/resources", tags=["resources"], route_class=PlannedRoute)

# OFFSET is a signed 64-bit integer on every backend we support.
MAX_SKIP = 2**63 - 1
SKIP = "Resources to pass over (paging by position; its cost grows with the depth)."
CURSOR = (
    'Continue after the page that gave this cursor (in its `Link: rel="next"`): paging by'
    " key, as cheap at any depth; a `skip` then passes over that many more."
)
COUNT = (
    "Count all matches into `X-Total-Count` (a cost that grows with the table). Default: true"
    " when paging by position, false by cursor; `count=false` on a first page pages by key."
)
OWNER = "Only this user's resources."
MINE = (
    "Only the caller's own resources (a bearer token is then needed). Filters narrow together:"
    " with another user's `owner_id`, none."
)
NAME = "Only resources whose name contains this text, ignoring case (ASCII letters on SQLite)."
SORT = (
    "The order: by id (the default), name or creation time, each tie broken by id; a leading"
    " `-` reverses it. Each has its index, so paging by key is as cheap in any of them."
)


def json_answer(body: bytes | None, response: Response, status_code: int = 200) -> Response:
    """An answer built here, with the headers the dependencies set on `response` (FastAPI
    adds them only to answers it builds itself)."""
    media_type = None if body is None else "application/json"
    answer = Response(body, status_code=status_code, media_type=media_type)
    answer.headers.update(response.headers)
    return answer


def _with_etag(status_code: int) -> dict[int | str, dict[str, Any]]:
    return {status_code: {"description": "The resource", "headers": ETAG_HEADER}}


@router.get("", response_model=list[ResourceOut], operation_id="resources-list")
@may_answer(401)  # mine=true without a valid token
async def list_resources(
    _limit: ReadLimit,
    request: Request,
    response: Response,
    reads: Reads,
    token: BearerToken,
    skip: Annotated[int, Query(ge=0, le=MAX_SKIP, description=SKIP)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description=CURSOR)] = None,
    count: Annotated[bool | None, Query(description=COUNT)] = None,
    sort: Annotated[Sort, Query(description=SORT)] = "id",
    owner_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description=OWNER)] = None,
    mine: Annotated[bool, Query(description=MINE)] = False,
    name: Annotated[
        str | None,
        Query(min_length=1, max_length=NAME_MAX_LENGTH, pattern=STORABLE_PATTERN, description=NAME),
    ] = None,
) -> Response:
    """Resources a page at a time, in `sort`'s order: by position (`skip`) or by key (`cursor`)."""
    after = None if cursor is None else decode_cursor(cursor, sort)
    counted = count if count is not None else after is None

    def read(reading: Reading) -> tuple[resources.Page, bytes]:
        owners: tuple[int, ...] = () if owner_id is None else (owner_id,)
        if mine:
            owners += (users.caller_from_token(reading, token).id,)
        where = resources.ResourceFilter(owner_ids=owners, name_contains=name)
        page = resources.page(
            reading, limit, skip=skip, after=after, where=where, order=order_of(sort), count=counted
        )
        return page, RESOURCE_LIST.dump_json(RESOURCE_LIST.validate_python(page.resources))

    page, body = await reads.run(read)
    by_key = after is not None or not counted
    set_paging_headers(response, request, page, skip=skip, limit=limit, by_key=by_key, sort=sort)
    return json_answer(body, response)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ResourceOut,
    operation_id="resources-create",
    responses=_with_etag(status.HTTP_201_CREATED),
)
async def create_resource(
    data: ResourceCreate,
    writes: Writes,
    idempotency: Idempotency,
    request: Request,
    response: Response,
) -> Response:
    def create(uow: UnitOfWork, user: Caller) -> Response:
        idempotent = idempotency.begin(uow, user)
        if replay := idempotent.replay():
            return replay
        created = resources.create(uow, user, data)
        response.headers["ETag"] = shown_etag(created)
        # A path, not a URL: nothing in an answer is built from the client's Host header.
        location = request.app.url_path_for("get_resource", resource_id=created["id"])
        response.headers["Location"] = f"{request.scope.get('root_path', '')}{location}"
        answer = json_answer(to_json(created), response, status.HTTP_201_CREATED)
        return idempotent.remember(answer, "Location", "ETag")

    return await writes.run(create)


@router.post(
    "/bulk",
    status_code=status.HTTP_201_CREATED,
    response_model=list[ResourceOut],
    operation_id="resources-create-bulk",
)
async def create_resources(
    items: Annotated[list[ResourceCreate], Body(min_length=1, max_length=BULK_MAX_ITEMS)],
    writes: Writes,
    idempotency: Idempotency,
    response: Response,
) -> Response:
    def create_all(uow: UnitOfWork, user: Caller) -> Response:
        idempotent = idempotency.begin(uow, user)
        if replay := idempotent.replay():
            return replay
        created = resources.create_many(uow, user, items)
        answer = json_answer(to_json(created), response, status.HTTP_201_CREATED)
        return idempotent.remember(answer)

    return await writes.run(create_all)


@router.get(
    "/{resource_id:int}",
    response_model=ResourceOut,
    operation_id="resources-get",
    responses={**_with_etag(status.HTTP_200_OK), **NOT_MODIFIED},
)
@may_answer(404)
async def get_resource(
    _limit: ReadLimit,
    resource_id: int,
    reads: Reads,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> Response:
    def read(reading: Reading) -> tuple[str, bytes]:
        resource = resources.get(reading, resource_id)
        return etag(resource), RESOURCE.dump_json(RESOURCE.validate_python(resource))

    current, body = await reads.run(read)
    response.headers["ETag"] = current
    if not_modified(current, if_none_match):
        return json_answer(None, response, status.HTTP_304_NOT_MODIFIED)
    return json_answer(body, response)


def _to_write(
    uow: UnitOfWork,
    user: Caller,
    resource_id: int,
    preconditions: tuple[str | None, str | None],
    *,
    admin_may: bool = False,
) -> Resource:
    """The path's resource, loaded once (and locked) and checked for ownership (404, then 403),
    then against the request's preconditions (If-Match, If-None-Match: 412)."""
    resource = resources.get_owned(uow.session, resource_id, user, admin_may=admin_may)
    check_write(resource, *preconditions)
    return resource


def _tagged(shown: dict[str, Any], response: Response) -> Response:
    """A changed resource's answer, as its event shows it, with its version as the ETag
    (built before the commit)."""
    response.headers["ETag"] = shown_etag(shown)
    return json_answer(to_json(shown), response)


@router.put(
    "/{resource_id:int}",
    response_model=ResourceOut,
    operation_id="resources-replace",
    responses=_with_etag(status.HTTP_200_OK),
)
@may_answer(403, 404, 412)
async def replace_resource(
    resource_id: int,
    data: ResourceCreate,
    writes: Writes,
    response: Response,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    def replace(uow: UnitOfWork, user: Caller) -> Response:
        resource = _to_write(uow, user, resource_id, (if_match, if_none_match))
        return _tagged(resources.replace(uow, resource, data), response)

    return await writes.run(replace)


@router.patch(
    "/{resource_id:int}",
    response_model=ResourceOut,
    operation_id="resources-update",
    responses=_with_etag(status.HTTP_200_OK),
)
@may_answer(403, 404, 412)
async def patch_resource(
    resource_id: int,
    data: ResourcePatch,
    writes: Writes,
    response: Response,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    def update(uow: UnitOfWork, user: Caller) -> Response:
        resource = _to_write(uow, user, resource_id, (if_match, if_none_match))
        return _tagged(resources.update(uow, resource, data.changes()), response)

    return await writes.run(update)


@router.delete(
    "/{resource_id:int}", status_code=status.HTTP_204_NO_CONTENT, operation_id="resources-delete"
)
@may_answer(403, 404, 412)
async def delete_resource(
    resource_id: int,
    writes: Writes,
    response: Response,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The owner, or an admin, deletes it."""

    def delete(uow: UnitOfWork, user: Caller) -> None:
        preconditions = (if_match, if_none_match)
        resources.delete(uow, _to_write(uow, user, resource_id, preconditions, admin_may=True))

    await writes.run(delete)
    return json_answer(None, response, status.HTTP_204_NO_CONTENT)
