"""RFC 9457 problem details: the one shape of every error answer, and its schema.

Every error is `application/problem+json` with `type`, `title`, `status`, a string `detail`,
`instance` (the request's path) and the request id; a 422 adds `errors`, one per field.
"""

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse
from starlette.types import Scope

PROBLEM_MEDIA_TYPE = "application/problem+json"
PYDANTIC_VALUE_ERROR = "Value error, "
# No problem of ours has semantics beyond its status code: `title` is the status phrase.
ABOUT_BLANK = "about:blank"


class Problem(BaseModel):
    """An error (RFC 9457)."""

    type: str = Field(default=ABOUT_BLANK, examples=[ABOUT_BLANK])
    title: str = Field(examples=["Not Found"])
    status: int = Field(ge=400, le=599, examples=[404])
    detail: str = Field(examples=["Resource not found"])
    instance: str | None = Field(default=None, examples=["/api/v1/resources/7"])
    request_id: str | None = Field(default=None, description="the answer's `X-Request-ID`")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: `body`, `query`, `path`, then the field")
    msg: str
    type: str


class ValidationProblem(Problem):
    """A 422: what was wrong with each field."""

    errors: list[FieldError]


def plain_message(message: str) -> str:
    """A validation message without pydantic's prefix for our own validators' errors: they
    say what is wrong already."""
    return message.removeprefix(PYDANTIC_VALUE_ERROR)


def problem_body(
    status: int, detail: str, *, scope: Scope | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": ABOUT_BLANK,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if scope is not None:
        body["instance"] = f"{scope.get('root_path', '')}{scope['path']}"
        body["request_id"] = scope.get("state", {}).get("request_id")
    return {**body, **extra}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem_response(
    scope: Scope,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    """The answer for an error met while serving `scope`."""
    return ProblemResponse(problem_body(status, detail, scope=scope, **extra), status, headers)
