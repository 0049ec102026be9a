"""Domain errors raised by services, and the one place that turns errors into HTTP answers.

Every error is an RFC 9457 problem (`app.problems`) with a string `detail`, whatever raised it.
"""

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.connection_gate import ConnectionsExhausted
from app.middleware import API_SECURITY_HEADERS
from app.problems import plain_message, problem_response

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "Database unavailable"
DATABASE_BUSY = "Database busy; retry shortly"
RETRY_AFTER_SECONDS = 1


class DomainError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    default_headers: ClassVar[dict[str, str] | None] = None
    # A refusal that is itself a change to keep (a stolen token's session ended): the unit
    # of work commits before the error is answered.
    keeps_changes: ClassVar[bool] = False

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers if headers is not None else self.default_headers


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND


class Forbidden(DomainError):
    status_code = status.HTTP_403_FORBIDDEN


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT


class Unprocessable(DomainError):
    """Well-formed input that cannot be acted on; like any 422, it names the field (`loc`)."""

    status_code = status.HTTP_422_UNPROCESSABLE_CONTENT

    def __init__(self, detail: str, loc: tuple[str, ...]) -> None:
        super().__init__(detail)
        self.loc = loc


class PreconditionFailed(DomainError):
    status_code = status.HTTP_412_PRECONDITION_FAILED


class NotAuthenticated(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class RefreshTokenReused(NotAuthenticated):
    keeps_changes = True


class TooManyRequests(DomainError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS


class ServiceUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


def _printable(value: Any) -> Any:
    """Make text safe to encode: a client's lone surrogate must not turn a 422 into a 500."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # `input` and `ctx` echo the client's data back (possibly huge, possibly unencodable).
    return [
        {
            "loc": [_printable(part) for part in error["loc"]],
            "msg": plain_message(_printable(error["msg"])),
            "type": error["type"],
        }
        for error in exc.errors()
    ]


def _summary(errors: list[dict[str, Any]]) -> str:
    """One line naming each field and what is wrong with it."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors
    )


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    if isinstance(exc, Unprocessable):
        errors = [{"loc": list(exc.loc), "msg": exc.detail, "type": "value_error"}]
        return _validation_problem(request, errors)
    return problem_response(request.scope, exc.status_code, exc.detail, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _validation_problem(request, _field_errors(exc))


def _validation_problem(request: Request, errors: list[dict[str, Any]]) -> Response:
    return problem_response(
        request.scope, status.HTTP_422_UNPROCESSABLE_CONTENT, _summary(errors), errors=errors
    )


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's),
    with HEAD wherever GET is (HeadAsGet)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        path_regex = getattr(route, "path_regex", None)
        if path_regex is not None and path_regex.match(request.scope["path"]):
            methods |= route.methods or set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        headers["Allow"] = allowed_methods(request)
    return problem_response(request.scope, exc.status_code, str(exc.detail), headers)


async def _database_busy(request: Request, _exc: Exception) -> Response:
    return problem_response(
        request.scope,
        status.HTTP_503_SERVICE_UNAVAILABLE,
        DATABASE_BUSY,
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _database_unreachable(request: Request, exc: Exception) -> Response:
    logger.error("database operation failed: %s", exc)
    return problem_response(
        request.scope, status.HTTP_503_SERVICE_UNAVAILABLE, DATABASE_UNAVAILABLE
    )


async def _changed_meanwhile(request: Request, _exc: Exception) -> Response:
    # A safety net: writes lock their row first (resources.get_owned), so this should not come.
    return problem_response(
        request.scope,
        status.HTTP_409_CONFLICT,
        "The resource changed meanwhile; read it again and retry",
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Anything unforeseen: a problem naming the request, never a plain-text 500. The answer is
    sent by Starlette's outermost middleware, past ours, so it carries our headers itself."""
    request_id = getattr(request.state, "request_id", "")
    logger.error(
        "unhandled %s in %s %s (request %s)",
        type(exc).__name__,
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    return problem_response(
        request.scope,
        status.HTTP_500_INTERNAL_SERVER_ERROR,
        "Internal server error",
        {"X-Request-ID": request_id, **API_SECURITY_HEADERS},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(OperationalError, _database_unreachable)
    app.add_exception_handler(ConnectionsExhausted, _database_busy)
    app.add_exception_handler(PoolTimeout, _database_busy)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StaleDataError, _changed_meanwhile)
    app.add_exception_handler(Exception, _unexpected)
