"""Routes whose dependencies are solved by a plan made once, at start-up.

FastAPI solves a route's dependency tree anew on every request: for each parameter it asks
again what the annotation is, whether it is a sequence, which aliases it has, and so on. On a
small read that was a quarter of the server's CPU. `PlannedRoute` does those checks once and
keeps, for each dependency, only what a request needs: what to call, and where each parameter
comes from. It plans what it can do exactly as FastAPI does: `async` dependencies (not
generators, no concurrency limits or security scopes) whose parameters are the request, the
response, one-valued path, query, header and cookie parameters with plain aliases, or other
such dependencies; an `async` endpoint that answers a `Response` itself and takes at most
one body, JSON, read as FastAPI reads it. Any other route is left to FastAPI, as is a
request for which a dependency of the route is overridden (`app.dependency_overrides`, as
tests do) or FastAPI's own body limit is set. The OpenAPI document is FastAPI's: the
route's signature is still the one source of what it takes.
"""

import email.message
import inspect
import json
from collections.abc import Callable, Coroutine, Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from fastapi import params
from fastapi._compat import field_annotation_is_sequence
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, _effective_route_context_var
from pydantic_core import PydanticUndefined as Undefined
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY as BODY_LIMIT
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# Where each kind of parameter is found on the request.
_SOURCES = {
    "path": "path_params",
    "query": "query_params",
    "header": "headers",
    "cookie": "cookies",
}
_IMMUTABLE_DEFAULTS = (type(None), bool, int, float, str, bytes, tuple, frozenset)


class NotPlannable(Exception):
    """The route needs something only FastAPI's own solver does."""


def _missing(loc: tuple[str, ...]) -> dict[str, Any]:
    """The error FastAPI gives for a required parameter not sent."""
    return {"type": "missing", "loc": loc, "msg": "Field required", "input": None}


@dataclass(frozen=True, slots=True)
class _Field:
    """A path, query, header or cookie parameter, or the body: where it is found and how
    FastAPI checks it."""

    name: str
    source: str  # "path", "query", "header", "cookie" or "body"
    key: str  # its name in the request
    loc: tuple[str, ...]
    field: Any  # FastAPI's ModelField: its `validate` is FastAPI's own check
    default: Any
    copy_default: bool
    required: bool
    validate_default: bool

    @classmethod
    def parameter(cls, field: Any) -> "_Field":
        info = field.field_info
        key = getattr(field, "validation_alias", None) or field.alias
        config = getattr(field, "config", None) or {}
        if (
            not isinstance(info, params.Param)
            or not isinstance(key, str)  # a choice of aliases, or a path into the value
            or config.get("validate_by_alias") is False
            or config.get("validate_by_name", config.get("populate_by_name", False))
        ):
            raise NotPlannable(f"{field.name}: an alias FastAPI chooses per request")
        if field_annotation_is_sequence(info.annotation):
            raise NotPlannable(f"{field.name}: many values")
        return cls._of(field, info.in_.value, key, (info.in_.value, key))

    @classmethod
    def body(cls, field: Any) -> "_Field":
        """The body, when it is one JSON value (no form, not embedded under its name)."""
        info = field.field_info
        if isinstance(info, params.Form) or not isinstance(info, params.Body) or info.embed:
            raise NotPlannable(f"{field.name}: a body FastAPI unpacks per request")
        return cls._of(field, "body", "", ("body",))

    @classmethod
    def _of(cls, field: Any, source: str, key: str, loc: tuple[str, ...]) -> "_Field":
        return cls(
            name=field.name,
            source=source,
            key=key,
            loc=loc,
            field=field,
            default=field.default,
            copy_default=not isinstance(field.default, _IMMUTABLE_DEFAULTS),
            required=field.field_info.is_required(),
            validate_default=bool(field.field_info.validate_default),
        )

    def accept(self, value: Any, values: dict[str, Any], errors: list[Any]) -> None:
        """`value` (Undefined: not sent) checked into `values`, or what is wrong into `errors`."""
        if value is Undefined:
            if self.required:
                errors.append(_missing(self.loc))
                return
            value = deepcopy(self.default) if self.copy_default else self.default
            if not self.validate_default:
                values[self.name] = value
                return
        checked, found = self.field.validate(value, values, loc=self.loc)
        if found:
            errors.extend(found)
        else:
            values[self.name] = checked


def _is_async(call: Any) -> bool:
    if inspect.isasyncgenfunction(call) or inspect.isgeneratorfunction(call):
        return False
    if inspect.iscoroutinefunction(call):
        return True
    # An instance whose method is the dependency, like OAuth2PasswordBearer.
    return not inspect.isfunction(call) and inspect.iscoroutinefunction(type(call).__call__)


class _Solving:
    """One request's solving: its body, its response, the dependencies already called."""

    __slots__ = ("body", "request", "response", "solved")

    def __init__(self, request: Request, body: Any) -> None:
        self.request = request
        self.body = body
        self.response = Response()
        del self.response.headers["content-length"]  # as FastAPI's: headers only
        self.response.status_code = None  # type: ignore[assignment]
        self.solved: dict[Callable[..., Any], Any] = {}

    def given(self, field: _Field) -> Any:
        if field.source == "body":
            return self.body
        sent: Mapping[str, Any] = getattr(self.request, _SOURCES[field.source])  # parsed once
        return sent.get(field.key, Undefined)


class _Plan:
    """A dependant solved as FastAPI would: its dependencies in order (each called once per
    request), then its own parameters and body; every error collected, nothing called past
    one. Only the endpoint may take the body."""

    def __init__(self, dependant: Dependant, *, endpoint: bool = False) -> None:
        if dependant.call is None or not _is_async(dependant.call):
            raise NotPlannable(f"{dependant.call!r} is not an async function")
        if (
            (dependant.body_params and not endpoint)
            or len(dependant.body_params) > 1
            or dependant.background_tasks_param_name
            or dependant.security_scopes_param_name
            or dependant.websocket_param_name
            or dependant.concurrency is not None
        ):
            raise NotPlannable(f"{dependant.call!r} takes what FastAPI solves per request")
        self.call = dependant.call
        self.name = dependant.name
        self.use_cache = dependant.use_cache
        self.dependencies = [_Plan(sub) for sub in dependant.dependencies]
        self.fields = [
            *(
                _Field.parameter(field)
                for field in (
                    *dependant.path_params,
                    *dependant.query_params,
                    *dependant.header_params,
                    *dependant.cookie_params,
                )
            ),
            *(_Field.body(field) for field in dependant.body_params),
        ]
        self.takes_body = bool(dependant.body_params)
        self.request_names = [
            name
            for name in (dependant.request_param_name, dependant.http_connection_param_name)
            if name
        ]
        self.response_name = dependant.response_param_name

    def calls(self) -> set[Callable[..., Any]]:
        found = {self.call}
        for dependency in self.dependencies:
            found |= dependency.calls()
        return found

    async def arguments(self, solving: _Solving, errors: list[Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for dependency in self.dependencies:
            before = len(errors)
            if dependency.use_cache and dependency.call in solving.solved:
                value = solving.solved[dependency.call]
            else:
                arguments = await dependency.arguments(solving, errors)
                if len(errors) > before:
                    continue
                value = await dependency.call(**arguments)
                solving.solved.setdefault(dependency.call, value)
            if dependency.name is not None:
                values[dependency.name] = value
        for field in self.fields:
            field.accept(solving.given(field), values, errors)
        for name in self.request_names:
            values[name] = solving.request
        if self.response_name:
            values[self.response_name] = solving.response
        return values


class PlannedRoute(APIRoute):
    """An `APIRoute` solved by its plan where one can be made (`planned` says whether)."""

    planned: bool = False

    def get_route_handler(self) -> Handler:
        fastapi_handler = super().get_route_handler()
        # A route is built once alone and once more where a router includes it: there its
        # dependant holds the including routers' dependencies, and the app's overrides apply.
        included = _effective_route_context_var.get()
        route = included if included is not None and included.original_route is self else self
        if not _answers_itself(route.dependant.call):
            return fastapi_handler
        try:
            plan = _Plan(route.dependant, endpoint=True)
        except NotPlannable:
            return fastapi_handler
        self.planned = True
        strict = route.strict_content_type
        if isinstance(strict, DefaultPlaceholder):
            strict = strict.value
        body = _JsonBody(bool(strict)) if plan.takes_body else None
        return _planned_handler(plan, body, route.dependency_overrides_provider, fastapi_handler)


def _planned_handler(
    plan: _Plan, body: "_JsonBody | None", provider: Any, fastapi_handler: Handler
) -> Handler:
    calls = plan.calls()

    async def handle(request: Request) -> Response:
        overrides = getattr(provider, "dependency_overrides", None)
        if (overrides and not calls.isdisjoint(overrides)) or BODY_LIMIT in request.scope:
            return await fastapi_handler(request)  # FastAPI's to enforce its body limit
        sent = Undefined if body is None else await body.read(request)
        errors: list[Any] = []
        arguments = await plan.arguments(_Solving(request, sent), errors)
        if errors:
            raise RequestValidationError(errors, body=None if sent is Undefined else sent)
        answer = await plan.call(**arguments)
        if not isinstance(answer, Response):
            raise TypeError(f"{plan.call!r} answered {answer!r}, not a Response")
        return answer

    return handle


@dataclass(frozen=True, slots=True)
class _JsonBody:
    """The body read as FastAPI reads it for one body parameter: JSON when the content type
    says so (or says nothing, where not strict), else the bytes; none (Undefined) if empty."""

    strict_content_type: bool

    async def read(self, request: Request) -> Any:
        try:
            sent = await request.body()
            if not sent:
                return Undefined
            if self._says_json(request.headers.get("content-type")):
                return await request.json()
            return sent
        except json.JSONDecodeError as error:
            problem = {
                "type": "json_invalid",
                "loc": ("body", error.pos),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": error.msg},
            }
            raise RequestValidationError([problem], body=error.doc) from error
        except HTTPException:
            raise
        except Exception as error:
            raise HTTPException(400, "There was an error parsing the body") from error

    def _says_json(self, content_type: str | None) -> bool:
        if not content_type:
            return not self.strict_content_type
        message = email.message.Message()
        message["content-type"] = content_type
        if message.get_content_maintype() != "application":
            return False
        subtype = message.get_content_subtype()
        return subtype == "json" or subtype.endswith("+json")


def _answers_itself(endpoint: Callable[..., Any] | None) -> bool:
    """Its own `Response`, so that nothing of FastAPI's serializing is needed."""
    if endpoint is None:
        return False
    returns = inspect.signature(endpoint).return_annotation
    return inspect.isclass(returns) and issubclass(returns, Response)
