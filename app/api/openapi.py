"""An honest OpenAPI document: every error a route can answer is listed, with the problem schema.

Whatever can refuse a request says so where it is written: `@may_answer(401)` on a dependency
or an endpoint. `document_problems` walks each route's dependency tree once, at start-up, and
lists what it finds, plus what every route can meet (a 500; with a body 400, 413 and 422).
"""

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from app.problems import PROBLEM_MEDIA_TYPE, Problem, ValidationProblem

F = TypeVar("F", bound=Callable[..., Any])

_STATUSES = "__problem_statuses__"
REF = "#/components/schemas/{model}"

WHY = {
    400: "The body could not be read",
    401: "Missing, expired or revoked token",
    403: "Not allowed to the caller",
    404: "No such resource",
    409: "Conflicts with the current state",
    412: "A precondition (`If-Match`, `If-None-Match`) does not hold: see `ETag`",
    413: "Request body too large",
    422: "Invalid input: `errors` names each field",
    429: "Rate limit exceeded: see `Retry-After` and `RateLimit`",
    500: "Unforeseen error: `request_id` ties it to the server log",
    503: "Database or upstream unavailable, or busy: retry later",
}


def may_answer(*statuses: int) -> Callable[[F], F]:
    """Declare the error statuses a dependency or endpoint may answer, for the document."""

    def mark(function: F) -> F:
        setattr(function, _STATUSES, (*getattr(function, _STATUSES, ()), *statuses))
        return function

    return mark


def _declared(dependant: Dependant) -> set[int]:
    statuses = set(getattr(dependant.call, _STATUSES, ()))
    if dependant.path_params or dependant.query_params or dependant.header_params:
        statuses.add(422)
    for dependency in dependant.dependencies:
        statuses |= _declared(dependency)
    return statuses


def route_problems(route: APIRoute) -> set[int]:
    """Every error status `route` can answer."""
    statuses = _declared(route.dependant) | {500}
    if route.body_field is not None:
        statuses |= {400, 413, 422}
    return statuses


def _problem_response(status: int) -> dict[str, Any]:
    model = ValidationProblem if status == 422 else Problem
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"description": WHY[status], "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}}}


def document_problems(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """List the problems of each route of `routers` (before `app` includes them: an included
    route copies its responses), and the problem schemas in the document's components."""
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute):
                for status in sorted(route_problems(route)):
                    route.responses.setdefault(status, _problem_response(status))
    generate = app.openapi
    _, definitions = models_json_schema(
        [(Problem, "serialization"), (ValidationProblem, "serialization")], ref_template=REF
    )

    def openapi() -> dict[str, Any]:
        # FastAPI makes the document once and keeps it: the problem schemas go in then.
        made_now = app.openapi_schema is None
        document = generate()
        if made_now:
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                definitions["$defs"]
            )
        return document

    app.openapi = openapi  # type: ignore[method-assign]
