"""Domain errors raised by services, and the one place that turns errors into HTTP answers.

Every error body is JSON with a `detail`, whatever raised it.
"""

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.database import ConnectionsExhausted
from app.middleware import API_SECURITY_HEADERS

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "Database unavailable"
DATABASE_BUSY = "Database busy; retry shortly"
RETRY_AFTER_SECONDS = 1


class DomainError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    default_headers: ClassVar[dict[str, str] | None] = None

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


class NotAuthenticated(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class TooManyRequests(DomainError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS


class ServiceUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


def _printable(value: Any) -> Any:
    """Make text safe to encode: a client's lone surrogate must not turn a 422 into a 500."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    # `input` and `ctx` echo the client's data back (possibly huge, possibly unencodable).
    return [
        {
            "type": error["type"],
            "loc": [_printable(part) for part in error["loc"]],
            "msg": _printable(error["msg"]),
        }
        for error in exc.errors()
    ]


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _validation_detail(exc)}, status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"detail": exc.detail}, exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _database_busy(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": DATABASE_BUSY},
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _database_unreachable(_request: Request, exc: Exception) -> JSONResponse:
    logger.error("database operation failed: %s", exc)
    return JSONResponse({"detail": DATABASE_UNAVAILABLE}, status.HTTP_503_SERVICE_UNAVAILABLE)


async def _changed_meanwhile(_request: Request, _exc: Exception) -> JSONResponse:
    # A safety net: writes lock their row first (resources.get_owned), so this should not come.
    return JSONResponse(
        {"detail": "The resource changed meanwhile; read it again and retry"},
        status.HTTP_409_CONFLICT,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen: JSON naming the request, never a plain-text 500. The answer is sent
    by Starlette's outermost middleware, past ours, so it carries our headers itself."""
    request_id = getattr(request.state, "request_id", "")
    logger.error(
        "unhandled %s in %s %s (request %s)",
        type(exc).__name__,
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    return JSONResponse(
        {"detail": "Internal server error", "request_id": request_id},
        status.HTTP_500_INTERNAL_SERVER_ERROR,
        headers={"X-Request-ID": request_id, **API_SECURITY_HEADERS},
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
