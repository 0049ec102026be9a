"""The external enrichment service: the HTTP client, and the rule for reading its answers."""

import inspect
import json
import logging
from typing import Any

import anyio
import httpx

from app.errors import NotFound, ServiceUnavailable
from app.models import id_can_exist
from app.settings import Settings, get_settings

logger = logging.getLogger(__name__)

UNAVAILABLE = "Service temporarily unavailable"
NOT_CONFIGURED = "External service not configured"


class ExternalServiceError(Exception):
    """The service failed: down, slow, erroring or answering nonsense."""


class ExternalNotFound(ExternalServiceError):
    """The service answered 404 for the id."""


class ExternalNotConfigured(ExternalServiceError):
    """No EXTERNAL_API_URL: there is no service to ask."""


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.external_api_url,
        headers={"X-API-Key": settings.external_api_key},
        timeout=settings.external_api_timeout,
    )


class SharedHttpClient:
    """The pooled client the app shares, made on first use: its TLS context (the CA bundle,
    ~3 MiB) costs nothing to a process that never calls out."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = build_http_client(self._settings)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class ExternalClient:
    def __init__(
        self, http: httpx.AsyncClient | None = None, settings: Settings | None = None
    ) -> None:
        self._settings = settings or get_settings()
        self._http = http

    async def fetch_data(self, resource_id: int) -> dict[str, Any]:
        """`GET /resources/{id}`: the service's reply, within one overall deadline.

        httpx's timeouts apply to each read, so a server trickling a byte a second would never
        trip them; the deadline bounds the whole exchange.
        """
        if not self._settings.external_api_url:
            raise ExternalNotConfigured("EXTERNAL_API_URL is not set")
        try:
            with anyio.fail_after(self._settings.external_api_timeout):
                if self._http is not None:
                    return await self._get(self._http, resource_id)
                async with build_http_client(self._settings) as http:
                    return await self._get(http, resource_id)
        except TimeoutError as exc:
            raise ExternalServiceError("external service timed out") from exc
        except httpx.HTTPError as exc:
            raise ExternalServiceError(f"external service unreachable: {exc!r}") from exc

    async def _get(self, http: httpx.AsyncClient, resource_id: int) -> dict[str, Any]:
        path = f"/resources/{resource_id}"
        try:
            return await self._read(http, path, resource_id)
        except httpx.ConnectError:
            # Nothing was sent, so a second try is safe; a restarting service often accepts it.
            return await self._read(http, path, resource_id)

    async def _read(self, http: httpx.AsyncClient, path: str, resource_id: int) -> dict[str, Any]:
        """The reply, streamed: never more than `external_api_max_reply_bytes` is held."""
        limit = self._settings.external_api_max_reply_bytes
        async with http.stream("GET", path) as response:
            if response.status_code == httpx.codes.NOT_FOUND:
                raise ExternalNotFound(f"external service has no resource {resource_id}")
            if not response.is_success:
                raise ExternalServiceError(f"external service answered {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise ExternalServiceError(f"external service reply is over {limit} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise ExternalServiceError(f"external service reply is over {limit} bytes")
        return parse_reply(bytes(body))


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_reply(body: bytes) -> dict[str, Any]:
    """Strict JSON (no NaN or Infinity, nothing nested too deep to handle) holding an object."""
    try:
        reply = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise ExternalServiceError(f"external service sent malformed JSON ({exc})") from exc
    if not isinstance(reply, dict):
        raise ExternalServiceError("external service reply is not an object")
    return reply


async def fetch_external_data(client: Any, resource_id: int) -> Any:
    """The `data` of a successful reply; a 404 stays a 404, any other failure becomes a 503."""
    if not id_can_exist(resource_id):  # do not ask upstream about what cannot exist
        raise NotFound("Resource not found")
    try:
        reply = client.fetch_data(resource_id)
        if inspect.isawaitable(reply):  # the real client is async; test doubles may not be
            reply = await reply
        return _data_of(reply)
    except ExternalNotFound:
        raise NotFound("Resource not found by the external service") from None
    except ExternalNotConfigured:
        raise ServiceUnavailable(NOT_CONFIGURED) from None
    except Exception as exc:
        # Expected (the service is someone else's): one line with the cause, no traceback.
        logger.warning(
            "external service call for resource %s failed: %s: %s",
            resource_id,
            type(exc).__name__,
            exc,
        )
        raise ServiceUnavailable(UNAVAILABLE) from None


def _data_of(reply: Any) -> Any:
    """The `data` of a `{"status": "success", "data": …}` reply, if it can be sent on as JSON."""
    if not isinstance(reply, dict) or reply.get("status") != "success" or "data" not in reply:
        raise ExternalServiceError("external service sent an unusable reply")
    try:
        json.dumps(reply["data"], allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ExternalServiceError(f"external service data is not JSON ({exc})") from exc
    return reply["data"]
