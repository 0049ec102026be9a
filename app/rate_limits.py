"""Rate limits, on the `limits` library: in process, or in Redis so that they hold across
workers and hosts.

A policy is one or more windows ("30/minute;300/hour"); a caller is over it when any window
is used up. Answers carry what the IETF draft "RateLimit header fields for HTTP" asks for:
`RateLimit-Policy` (every window: quota `q`, window `w` in seconds) and `RateLimit` (the
tightest window: remaining `r`, seconds until it frees `t`).

If the store fails (Redis away), requests are let through and the failure is logged: a rate
limit protects the service, it must not become the outage.
"""

import logging
import math
import time
from dataclasses import dataclass
from functools import cached_property

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.storage import storage_from_string

from app.rate_windows import LocalWindows, StoredWindows, WindowCounter
from app.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    name: str
    windows: tuple[RateLimitItem, ...]

    @classmethod
    def parse(cls, name: str, notation: str) -> "Policy":
        """`name` and the `limits` notation ("5/minute;20/hour"); empty means no limit."""
        return cls(name, tuple(parse_many(notation)) if notation.strip() else ())

    def window_name(self, window: RateLimitItem) -> str:
        return f"{self.name}-{window.get_expiry()}s"

    @cached_property  # on every answer: built once
    def header(self) -> str:
        """`RateLimit-Policy`: every window of the policy."""
        return ", ".join(
            f'"{self.window_name(window)}";q={window.amount};w={window.get_expiry()}'
            for window in self.windows
        )


@dataclass(frozen=True)
class Decision:
    policy: Policy
    allowed: bool
    window: RateLimitItem | None = None  # the tightest window
    remaining: int = 0
    reset_after: int = 0  # seconds until the tightest window frees a request

    def headers(self) -> dict[str, str]:
        if self.window is None:
            return {}
        name = self.policy.window_name(self.window)
        headers = {
            "RateLimit-Policy": self.policy.header,
            "RateLimit": f'"{name}";r={self.remaining};t={self.reset_after}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(self.reset_after, 1))
        return headers


def build_counter(url: str, key_prefix: str) -> WindowCounter:
    """In process for an empty URL, else `redis://…` (or any `limits` storage URL)."""
    if not url:
        return LocalWindows()
    if url.startswith(("redis://", "rediss://")):
        url = f"async+{url}"
    storage = storage_from_string(url, implementation="redispy", key_prefix=key_prefix)
    if not isinstance(storage, Storage):
        raise ValueError(f"RATE_LIMIT_STORAGE_URL must name an async storage, not {url!r}")
    return StoredWindows(storage)


class RateLimiter:
    def __init__(self, counter: WindowCounter) -> None:
        self._counter = counter

    async def hit(self, policy: Policy, key: str) -> Decision:
        """Count one request against every window; refused if any window is used up."""
        return await self._decide(policy, key, consume=True)

    async def check(self, policy: Policy, key: str) -> Decision:
        """Whether one more would be allowed, counting nothing (a lockout check)."""
        return await self._decide(policy, key, consume=False)

    async def clear(self, policy: Policy, key: str) -> None:
        try:
            for window in policy.windows:
                await self._counter.clear(window, policy.name, key)
        except Exception as exc:  # any store failure: fail open
            logger.warning("rate limit store unavailable: %s", exc)

    async def _decide(self, policy: Policy, key: str, *, consume: bool) -> Decision:
        if not policy.windows:
            return Decision(policy, allowed=True)
        try:
            counts = [
                (window, await self._counter.count(window, policy.name, key, consume=consume))
                for window in policy.windows
            ]
        except Exception as exc:  # any store failure: fail open
            logger.warning("rate limit store unavailable, letting the request through: %s", exc)
            return Decision(policy, allowed=True)
        allowed = all(count.allowed for _, count in counts)
        now = time.time()
        decisions = [
            Decision(
                policy, allowed, window, count.remaining, max(math.ceil(count.reset_at - now), 0)
            )
            for window, count in counts
        ]
        # The tightest window: the fewest remaining, then the longest to wait.
        return min(decisions, key=lambda decision: (decision.remaining, -decision.reset_after))


@dataclass(frozen=True)
class Policies:
    """Every limit the API applies, from the settings (each a setting of its own)."""

    login_per_address: Policy
    login_failures_per_account: Policy
    registrations_per_address: Policy
    writes_per_user: Policy
    reads_per_address: Policy

    @classmethod
    def from_settings(cls, settings: Settings) -> "Policies":
        return cls(
            Policy.parse("login", settings.rate_limit_login_per_address),
            Policy.parse("login-failures", settings.rate_limit_login_failures_per_account),
            Policy.parse("registration", settings.rate_limit_registrations_per_address),
            Policy.parse("writes", settings.rate_limit_writes_per_user),
            Policy.parse("reads", settings.rate_limit_reads_per_address),
        )


def storage_url(settings: Settings) -> str:
    """RATE_LIMIT_STORAGE_URL, else the broker's Redis (so workers share limits), else memory."""
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return settings.broker_url
    return ""


@dataclass(frozen=True)
class RateLimits:
    """The limiter and the policies an app enforces."""

    limiter: RateLimiter
    policies: Policies

    @classmethod
    def from_settings(cls, settings: Settings) -> "RateLimits | None":
        if not settings.rate_limits_enabled:
            return None
        counter = build_counter(storage_url(settings), settings.rate_limit_key_prefix)
        return cls(RateLimiter(counter), Policies.from_settings(settings))
