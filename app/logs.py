"""Logs an operator can use: one line per event, JSON (`LOG_FORMAT=json`, production's default)
or text, each with its time, level, logger and the request's id; and one access line per
request with its method, path, status and duration. Nothing of a request's headers, query or
body is logged, so no token, password or key can be."""

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import Scope

# Set by app.middleware.RequestId for everything that runs within a request.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
ACCESS_FIELDS = ("method", "path", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

access_logger = logging.getLogger("app.access")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "-")
        entry["request_id"] = None if request_id == "-" else request_id
        entry.update(
            {name: getattr(record, name) for name in ACCESS_FIELDS if hasattr(record, name)}
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """For `logging.config.dictConfig` (and uvicorn's `log_config`): every logger, uvicorn's
    included, through one handler in one format, at `level`."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"json": {"()": JsonFormatter}, "text": {"format": TEXT_FORMAT}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": log_format,
                "filters": ["request_id"],
            }
        },
        "loggers": {
            name: {"handlers": [], "level": level, "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "app")
        },
        "root": {"handlers": ["default"], "level": level},
    }


def log_access(scope: Scope, status: int, seconds: float) -> None:
    """The access line of one HTTP request (an observer for app.middleware.ObserveRequests,
    which runs inside RequestId, so that the line names the request)."""
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
    }
    line = f"{fields['method']} {fields['path']} {status} {fields['duration_ms']}ms"
    access_logger.info(line, extra=fields)
