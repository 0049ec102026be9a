"""The application: `create_app()` wires routers, middleware and shared clients together."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

import anyio
import anyio.to_thread
from fastapi import FastAPI, status
from fastapi.middleware.cors import CORSMiddleware

from app.api.docs import DOCS_PAGES, install_docs
from app.api.live_updates import LiveConnections
from app.api.openapi import document_problems
from app.api.routes import auth, external, health, metrics, resources, summary, updates, users
from app.connection_gate import ConnectionGate
from app.errors import install_error_handlers
from app.events.broker import EventBroker, build_broker
from app.graceful import chain_before_exit
from app.logs import log_access
from app.metrics import RequestCounter, RouteTemplates, forget_this_process
from app.middleware import (
    AllowedHosts,
    BodySizeLimit,
    HeadAsGet,
    ObserveRequests,
    RequestId,
    RequestObserver,
    SecurityHeaders,
)
from app.rate_limits import RateLimits
from app.services.external_api import SharedHttpClient
from app.settings import Settings, get_settings

API_PREFIX = "/api/v1"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # Sized together with the connection gate (see ConnectionGate): threads > connections.
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.thread_pool_size
    app.state.connection_gate = gate = ConnectionGate(
        settings.db_connection_capacity, settings.db_pool_timeout
    )
    app.state.password_hashing = anyio.CapacityLimiter(settings.hash_concurrency)
    app.state.rate_limits = RateLimits.from_settings(settings)
    live: LiveConnections = app.state.live_connections
    restore_signals = chain_before_exit(
        lambda: live.close_all(status.WS_1001_GOING_AWAY, "Server shutting down")
    )
    # Stop what this lifespan started, whatever app.state holds by then: one app object may
    # serve several servers in turn (test clients, a live server), each with its own loop.
    broker: EventBroker = app.state.broker
    await broker.start()
    _freeze_what_start_up_made()
    app.state.http_client = http_client = SharedHttpClient(settings)
    try:
        yield
    finally:
        restore_signals()
        await http_client.aclose()
        await broker.stop()
        gate.close()
        forget_this_process()


@cache  # once per process: later lifespans (tests run many) would freeze their garbage too
def _freeze_what_start_up_made() -> None:
    """Start-up's objects live as long as the process: out of the collector's sight, a full
    collection walks only what requests make (it was the 100 ms p99 of bulk writes)."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Resource API",
        version="0.1.0",
        summary="User-owned resources with live updates",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.broker = build_broker(settings.broker_url, settings.broker_channel)
    app.state.live_connections = LiveConnections()
    app.state.http_client = None
    install_error_handlers(app)
    templates = _install_routes(app, settings)
    _install_middleware(app, settings, templates)
    return app


def _install_routes(app: FastAPI, settings: Settings) -> RouteTemplates:
    """Every route; what each one's path template is, for the metrics."""
    # The busiest first, each included once: FastAPI matches a nested router's routes again
    # at every level on every request.
    api_routers = [module.router for module in (resources, auth, users, external, summary)]
    document_problems(app, [*api_routers, health.router])
    for router in api_routers:
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(updates.router)
    app.include_router(health.router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    install_docs(app)
    return RouteTemplates(app, {API_PREFIX: api_routers})


def _install_middleware(app: FastAPI, settings: Settings, templates: RouteTemplates) -> None:
    # Added innermost first: a request meets them in the reverse order.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Location", "Link", "X-Total-Count", "RateLimit", "RateLimit-Policy"],
        )
    app.add_middleware(HeadAsGet)
    app.add_middleware(AllowedHosts, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(SecurityHeaders, docs_paths=DOCS_PAGES)
    observers: list[RequestObserver] = []
    if settings.access_log:
        observers.append(log_access)
    if settings.metrics_enabled:
        observers.append(RequestCounter(templates))
    if observers:  # inside RequestId, so that the access lines name their request
        app.add_middleware(ObserveRequests, observers=observers)
    app.add_middleware(RequestId)


app = create_app()
