"""What an operator scrapes (`/metrics`, Prometheus' format): requests by route and status,
their latency, database connections in use and waiting, live subscribers, fan-out passes,
events published and lost.

With several workers (`resource-api serve --workers N`) every worker writes its numbers to
files in `PROMETHEUS_MULTIPROC_DIR` (set by the CLI before the workers start) and whichever
worker answers a scrape adds them up, so one scrape sees the whole server.

A leaf: the database's connection gate and the event brokers count through it.
"""

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from fastapi import APIRouter
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Scope

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Label values come from a fixed set, whatever a client sends: an unknown method or a path no
# route serves must not grow the number of series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
UNMATCHED_ROUTE = "unmatched"

REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# "livesum": the sum over the workers alive now; a stopped worker's count goes with it.
DB_CONNECTIONS_IN_USE = Gauge(
    "db_connections_in_use",
    "Database connections held by requests",
    multiprocess_mode="livesum",
)
DB_CONNECTIONS_WAITING = Gauge(
    "db_connections_waiting",
    "Requests waiting for a database connection",
    multiprocess_mode="livesum",
)
LIVE_SUBSCRIBERS = Gauge(
    "live_subscribers",
    "WebSocket clients subscribed to live updates",
    multiprocess_mode="livesum",
)
# What live updates cost the server: the loop serves no request while a pass writes.
FAN_OUT_PASS_SECONDS = Histogram(
    "fan_out_pass_seconds",
    "Time a fan-out pass held the event loop, writing what was published since the last "
    "pass to every live subscriber of this process",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
EVENTS_PUBLISHED = Counter("events_published", "Change events handed to the broker after a commit")
EVENTS_LOST = Counter(
    "events_lost",
    "Change events that did not reach a subscriber: the broker was unavailable "
    "(broker_unavailable) or a subscriber fell too far behind and was dropped "
    "(subscriber_overflow)",
    ["reason"],
)


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR_VARIABLE))


def exposition(accept: str) -> tuple[bytes, str]:
    """Every metric, in the format the scraper asks for (Prometheus text or OpenMetrics), and
    its media type; the sum over all workers when there are several."""
    registry = REGISTRY
    if is_multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    encoder, media_type = choose_encoder(accept)
    return encoder(registry), media_type


@contextmanager
def shared_by_workers() -> Iterator[None]:
    """For a server of several worker processes, started within: each writes its numbers where
    all can read them. In PROMETHEUS_MULTIPROC_DIR when the operator names one (emptied of the
    last run's files first), else in a directory that lasts as long as the server."""
    given = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    with tempfile.TemporaryDirectory(prefix="resource-api-metrics-") as directory:
        os.environ[MULTIPROCESS_DIR_VARIABLE] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIR_VARIABLE]


def forget_this_process() -> None:
    """At a worker's exit: its live gauges stop counting toward the sum."""
    if is_multiprocess():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class RouteTemplates:
    """The path template of the route that served a request (`/api/v1/resources/{resource_id}`),
    as the route label. A router included under a prefix knows only its own part of the path,
    so the prefixes are named when the app is built; a path no route serves is `unmatched`."""

    def __init__(self, app: Starlette, prefixed: Mapping[str, Sequence[APIRouter]]) -> None:
        # By id: what the router leaves in the scope (the route; for a mount, its app).
        self._templates: dict[int, str] = {}
        for prefix, routers in prefixed.items():
            for router in routers:
                for route in router.routes:
                    self._templates[id(route)] = prefix + getattr(route, "path_format", "")
        for route in app.routes:
            if isinstance(route, Mount):
                self._templates[id(route.app)] = route.path_format

    def of(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return self._templates.get(id(scope.get("endpoint")), UNMATCHED_ROUTE)
        template = self._templates.get(id(route)) or getattr(route, "path_format", None)
        return template if isinstance(template, str) else UNMATCHED_ROUTE


class RequestCounter:
    """Counts and times each HTTP request by method, route template and status (an observer
    for app.middleware.ObserveRequests, which runs outside the middleware that may answer on
    its own, so a bad host or too large a body counts too)."""

    def __init__(self, templates: RouteTemplates) -> None:
        self.templates = templates

    def __call__(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
        labels = (method, self.templates.of(scope), str(status))
        REQUESTS.labels(*labels).inc()
        REQUEST_SECONDS.labels(*labels).observe(seconds)
