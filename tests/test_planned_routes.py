"""Routes solved by their plan (app/api/planned.py) answer exactly as FastAPI's own solver
would: the same status, body and headers for any query and headers a client sends. A
dependency overridden for a test hands the request back to FastAPI; so does an override that
is the dependency itself, which is how these tests ask FastAPI for its answer."""

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, nullcontext
from typing import Annotated, Any

import fastapi.routing
import pytest
from fastapi import APIRouter, Body, Cookie, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from app.api.deps import reader
from app.api.planned import PlannedRoute
from app.api.routes import resources
from app.api.writes import writer
from app.problems import PROBLEM_MEDIA_TYPE
from app.rate_limits import RateLimits
from app.settings import get_settings
from tests.conftest import StateSetter

URL = "/api/v1/resources"
# What differs between any two answers, whoever solved them.
VOLATILE = {"x-request-id", "ratelimit", "date"}


class Solves:
    """How many times FastAPI's own dependency solver ran."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def solves(monkeypatch: pytest.MonkeyPatch) -> Solves:
    seen = Solves()
    solve = fastapi.routing.solve_dependencies

    async def counted(**kwargs: Any) -> Any:
        seen.count += 1
        return await solve(**kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counted)
    return seen


@contextmanager
def solved_by_fastapi(app: FastAPI) -> Iterator[None]:
    """Within the block, the planned routes are FastAPI's to solve: each takes one of these."""
    for dependency in (reader, writer):
        app.dependency_overrides[dependency] = dependency
    try:
        yield
    finally:
        for dependency in (reader, writer):
            del app.dependency_overrides[dependency]


def comparable(response: Any) -> tuple[int, Any, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE)
    body = response.content
    if response.headers.get("content-type") == PROBLEM_MEDIA_TYPE:
        body = response.json()
        assert body.pop("request_id") == response.headers["x-request-id"]
    return response.status_code, body, headers


def both_ways(
    client: TestClient, fastapi_app: FastAPI, path: str, headers: dict[str, str]
) -> tuple[Any, Any]:
    planned = client.get(path, headers=headers)
    with solved_by_fastapi(fastapi_app):
        return planned, client.get(path, headers=headers)


def test_every_resource_route_is_planned() -> None:
    routes = resources.router.routes
    assert all(isinstance(route, PlannedRoute) and route.planned for route in routes)


def test_a_planned_read_skips_fastapis_solver(
    client: TestClient, auth_headers: dict[str, str], solves: Solves
) -> None:
    created = client.post(URL, json={"name": "planned"}, headers=auth_headers).json()
    solves.count = 0
    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}/{created['id']}").status_code == 200
    assert solves.count == 0


def test_an_override_hands_the_route_back_to_fastapi(
    client: TestClient, fastapi_app: FastAPI, solves: Solves
) -> None:
    with solved_by_fastapi(fastapi_app):
        assert client.get(URL).status_code == 200
    assert solves.count == 1


def test_an_unrelated_override_keeps_the_plan(
    client: TestClient, fastapi_app: FastAPI, solves: Solves
) -> None:
    def not_on_this_route() -> None: ...

    fastapi_app.dependency_overrides[not_on_this_route] = not_on_this_route
    try:
        assert client.get(URL).status_code == 200
    finally:
        del fastapi_app.dependency_overrides[not_on_this_route]
    assert solves.count == 0


# Values a client might send, good and bad: each key of the list, some twice, some unknown.
VALUES = st.sampled_from(
    ["", "0", "1", "-1", "10", "100", "101", "9" * 30, "abc", "true", "false", "yes", "1.5",
     "id", "-name", "created_at", "nope", "x" * 300, "\u00e9t\u00e9", "%00", "a%20b"]
)  # fmt: skip
KEYS = st.sampled_from(
    ["skip", "limit", "cursor", "count", "sort", "owner_id", "mine", "name", "other"]
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(query=st.lists(st.tuples(KEYS, VALUES), max_size=5), signed_in=st.booleans())
def test_the_list_answers_as_fastapi_would(
    client: TestClient,
    fastapi_app: FastAPI,
    auth_headers: dict[str, str],
    query: list[tuple[str, str]],
    signed_in: bool,
) -> None:
    path = URL + "?" + "&".join(f"{key}={value}" for key, value in query)
    planned, solved = both_ways(client, fastapi_app, path, auth_headers if signed_in else {})
    assert comparable(planned) == comparable(solved)


def test_a_cursor_answers_as_fastapi_would(
    client: TestClient, fastapi_app: FastAPI, auth_headers: dict[str, str]
) -> None:
    for n in range(3):
        client.post(URL, json={"name": f"paged {n}"}, headers=auth_headers)
    first = client.get(f"{URL}?limit=2&count=false&sort=-name")
    after = first.links["next"]["url"]
    planned, solved = both_ways(client, fastapi_app, after, {})
    assert planned.status_code == 200
    assert comparable(planned) == comparable(solved)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    resource=st.sampled_from(["{id}", "0", "-1", "999999", "9" * 30, "abc"]),
    if_none_match=st.sampled_from([None, "", "*", '"nope"', "{etag}", 'W/"x", {etag}']),
    authorization=st.sampled_from([None, "", "Bearer", "Bearer nope", "Basic abc"]),
)
def test_one_resource_answers_as_fastapi_would(
    client: TestClient,
    fastapi_app: FastAPI,
    auth_headers: dict[str, str],
    resource: str,
    if_none_match: str | None,
    authorization: str | None,
) -> None:
    created = client.post(URL, json={"name": "one"}, headers=auth_headers)
    known = {"id": created.json()["id"], "etag": created.headers["etag"]}
    headers = {}
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match.format(**known)
    if authorization is not None:
        headers["Authorization"] = authorization
    path = f"{URL}/{resource.format(**known)}"
    planned, solved = both_ways(client, fastapi_app, path, headers)
    assert comparable(planned) == comparable(solved)


# Bodies a client might send, good and bad, under content types good and bad.
BODIES = st.sampled_from(
    [b"", b"{", b"null", b"[]", b"{}", b'{"name": ""}', b'{"name": "ok"}', b'[{"name": "ok"}]',
     b'{"name": "ok", "metadata": []}', b'{"name": "ok", "metadata": {"a": 1}}', b"\xff\xfe",
     b'{"name": "ok", "description": null}', b'{"name": "\\u0000"}', b'"text"', b"1e999"]
)  # fmt: skip
CONTENT_TYPES = st.sampled_from(
    [None, "", "application/json", "application/json; charset=utf-8", "text/plain",
     "application/merge-patch+json", "application/x-www-form-urlencoded", "application/"]
)  # fmt: skip
WRITES = st.sampled_from(
    [("POST", ""), ("POST", "/bulk"), ("PUT", "/{id}"), ("PATCH", "/{id}"), ("PATCH", "/0"),
     ("DELETE", "/{id}"), ("PUT", "/{other}")]
)  # fmt: skip
# What two writes of the same request cannot share: the row's identity and times.
FRESH = {"id", "created_at", "updated_at"}


def written(response: Any) -> tuple[int, Any, list[tuple[str, str]]]:
    status, body, headers = comparable(response)
    unshared = {"etag", "location"}
    if response.headers.get("content-type") == "application/json":
        rows = response.json()
        body = [
            {key: value for key, value in row.items() if key not in FRESH}
            for row in (rows if isinstance(rows, list) else [rows])
        ]
        # A fresh id or time may be a digit longer (id 99, then 100): the length is checked
        # against each answer's own body instead.
        assert response.headers["content-length"] == str(len(response.content))
        unshared.add("content-length")
    return status, body, [(k, v) for k, v in headers if k not in unshared]


@pytest.fixture
def targets(
    client: TestClient,
    set_app_state: StateSetter,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
) -> dict[str, int]:
    """A resource of the caller's and one of another user's; limits roomy enough for every
    example to be written (each example's writes are rolled back, its counts are not)."""
    roomy = {"rate_limit_writes_per_user": "1000000/minute"}
    set_app_state("rate_limits", RateLimits.from_settings(get_settings().model_copy(update=roomy)))
    mine = client.post(URL, json={"name": "mine"}, headers=auth_headers)
    other = client.post(URL, json={"name": "theirs"}, headers=other_headers)
    return {"id": mine.json()["id"], "other": other.json()["id"]}


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    write=WRITES,
    body=BODIES,
    content_type=CONTENT_TYPES,
    token=st.sampled_from(["mine", "mine", "mine", "other", "none", "bad"]),
    key=st.sampled_from([None, None, "", "key-1", "bad key"]),
)
# Each way a body is read, at least once whatever the draw.
@example(("POST", ""), b'{"name": "ok"}', "application/json", "mine", "key-1")
@example(("POST", ""), b"{", "application/json", "mine", None)
@example(("POST", ""), b"\xff\xfe", "application/json", "mine", None)
@example(("POST", ""), b'{"name": "ok"}', None, "mine", None)
@example(("POST", ""), b"", "application/json", "mine", None)
@example(("PATCH", "/{id}"), b'{"name": "ok"}', "application/merge-patch+json", "mine", None)
@example(("PUT", "/{id}"), b'{"name": "ok"}', "text/plain", "mine", None)
@example(("POST", "/bulk"), b'[{"name": "ok"}]', "application/json", "mine", None)
@example(("DELETE", "/{id}"), b"", None, "mine", None)
def test_the_writes_answer_as_fastapi_would(
    client: TestClient,
    fastapi_app: FastAPI,
    savepoint: Any,
    targets: dict[str, int],
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    write: tuple[str, str],
    body: bytes,
    content_type: str | None,
    token: str,
    key: str | None,
) -> None:
    method, path = write
    headers = {
        "mine": auth_headers,
        "other": other_headers,
        "none": {},
        "bad": {"Authorization": "Bearer nope"},
    }[token].copy()
    if content_type is not None:
        headers["Content-Type"] = content_type
    if key is not None:
        headers["Idempotency-Key"] = key
    url = URL + path.format(**targets)
    answers = []
    for solver in (nullcontext(), solved_by_fastapi(fastapi_app)):
        with savepoint(), solver:
            answers.append(client.request(method, url, content=body, headers=headers))
    planned, solved = answers
    assert written(planned) == written(solved)


# A small app with a route of every shape the plan takes, and of each it leaves to FastAPI.
shapes = APIRouter(route_class=PlannedRoute)


async def page_size(size: Annotated[int, Query(ge=1, le=50)] = 10) -> int:
    return size


async def caller(request: Request, x_caller: Annotated[str, Header(min_length=2)]) -> str:
    return f"{x_caller} at {request.url.path}"


async def counted_once(request: Request) -> int:
    request.state.calls = getattr(request.state, "calls", 0) + 1
    return int(request.state.calls)


async def noted(response: Response, calls: Annotated[int, Depends(counted_once)]) -> None:
    response.headers["X-Noted"] = str(calls)


@shapes.get("/shape/{item_id}")
async def every_shape(
    _noted: Annotated[None, Depends(noted)],
    item_id: int,
    needed: Annotated[float, Query(gt=0)],
    size: Annotated[int, Depends(page_size)],
    who: Annotated[str, Depends(caller)],
    response: Response,
    calls: Annotated[int, Depends(counted_once)],
    flavour: Annotated[str | None, Cookie(max_length=5)] = None,
) -> Response:
    body = f"{item_id} {needed} {size} {who} {flavour} {calls}".encode()
    answer = Response(body)
    answer.headers.update(response.headers)
    return answer


def sync_dependency() -> int:
    return 1


async def generator_dependency() -> AsyncIterator[int]:
    yield 1


@shapes.get("/sync")
async def with_sync_dependency(one: Annotated[int, Depends(sync_dependency)]) -> Response:
    return Response(str(one))


@shapes.get("/generator")
async def with_generator(one: Annotated[int, Depends(generator_dependency)]) -> Response:
    return Response(str(one))


@shapes.get("/model")
async def answering_a_model() -> dict[str, int]:
    return {"one": 1}


@shapes.get("/many")
async def with_many_values(tags: Annotated[list[str], Query()]) -> Response:
    return Response(",".join(tags))


@shapes.get("/plain")
def not_async() -> Response:
    return Response("plain")


class Item(BaseModel):
    name: str = Field(min_length=2)


@shapes.post("/items")
async def with_a_body(
    item: Item, size: Annotated[int, Depends(page_size)], response: Response
) -> Response:
    return Response(f"{item.name} {size}")


@shapes.post("/embedded")
async def with_an_embedded_body(item: Annotated[Item, Body(embed=True)]) -> Response:
    return Response(item.name)


async def echo_what_was_read(request: Request, exc: Exception) -> Response:
    """The refusal with the body FastAPI read, so that tests can see it."""
    assert isinstance(exc, RequestValidationError)
    return Response(repr((exc.errors(), exc.body)), status_code=422)


@pytest.fixture(scope="module")
def shapes_app() -> FastAPI:
    app = FastAPI()
    app.include_router(shapes, prefix="/api")
    app.add_exception_handler(RequestValidationError, echo_what_was_read)
    return app


def test_what_is_planned_and_what_is_left_to_fastapi() -> None:
    planned = {route.path for route in shapes.routes if getattr(route, "planned", False)}
    assert planned == {"/shape/{item_id}", "/items"}


SHAPE_VALUES = st.sampled_from(["", "0", "1", "2.5", "-3", "60", "abc", "x" * 10])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    item=SHAPE_VALUES,
    query=st.lists(st.tuples(st.sampled_from(["needed", "size", "x"]), SHAPE_VALUES)),
    caller_header=st.one_of(st.none(), SHAPE_VALUES),
    flavour=st.one_of(st.none(), SHAPE_VALUES),
)
@example(item="1", query=[("needed", "2.5"), ("size", "3")], caller_header="abc", flavour="x")
def test_every_shape_answers_as_fastapi_would(
    shapes_app: FastAPI,
    item: str,
    query: list[tuple[str, str]],
    caller_header: str | None,
    flavour: str | None,
) -> None:
    path = f"/api/shape/{item}?" + "&".join(f"{key}={value}" for key, value in query)
    headers = {} if caller_header is None else {"X-Caller": caller_header}
    cookies = {} if flavour is None else {"flavour": flavour}
    with TestClient(shapes_app, cookies=cookies) as client:
        planned = client.get(path, headers=headers)
        shapes_app.dependency_overrides[page_size] = page_size
        try:
            solved = client.get(path, headers=headers)
        finally:
            del shapes_app.dependency_overrides[page_size]
    assert (planned.status_code, planned.content, planned.headers.get("x-noted")) == (
        solved.status_code,
        solved.content,
        solved.headers.get("x-noted"),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES, content_type=CONTENT_TYPES, size=st.sampled_from([None, "2", "0"]))
@example(b"\x80abc", "application/json", None)  # not UTF-8: FastAPI's 400
@example(b"{", "application/json", None)
@example(b'{"name": "ok"}', None, None)
def test_a_body_is_read_as_fastapi_reads_it(
    shapes_app: FastAPI, body: bytes, content_type: str | None, size: str | None
) -> None:
    path = "/api/items" + ("" if size is None else f"?size={size}")
    headers = {} if content_type is None else {"Content-Type": content_type}
    with TestClient(shapes_app) as client:
        planned = client.post(path, content=body, headers=headers)
        shapes_app.dependency_overrides[page_size] = page_size
        try:
            solved = client.post(path, content=body, headers=headers)
        finally:
            del shapes_app.dependency_overrides[page_size]
    assert (planned.status_code, planned.text) == (solved.status_code, solved.text)
