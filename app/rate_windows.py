"""Sliding-window counters for the rate limits: in this process, or in a `limits` storage
(Redis) that several workers share.

Both count as `limits`' sliding window counter does: a window's count is the current
period's hits plus the previous period's, weighted by how much of it the window still
covers. Each request is counted and reported (what remains, when the next request frees up)
in one step.
"""

import math
import time
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItem
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter


@dataclass(frozen=True, slots=True)
class WindowCount:
    allowed: bool
    remaining: int
    reset_at: float  # when the window next frees a request (epoch seconds)


class WindowCounter(Protocol):
    async def count(
        self, window: RateLimitItem, name: str, key: str, *, consume: bool
    ) -> WindowCount: ...

    async def clear(self, window: RateLimitItem, name: str, key: str) -> None: ...


class StoredWindows:
    """The windows in a `limits` storage: a hit (or a test) and its numbers, two calls."""

    def __init__(self, storage: Storage) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage)

    async def count(
        self, window: RateLimitItem, name: str, key: str, *, consume: bool
    ) -> WindowCount:
        if consume:
            allowed = await self._limiter.hit(window, name, key)
        else:
            allowed = await self._limiter.test(window, name, key)
        reset_at, remaining = await self._limiter.get_window_stats(window, name, key)
        return WindowCount(allowed, remaining, reset_at)

    async def clear(self, window: RateLimitItem, name: str, key: str) -> None:
        await self._limiter.clear(window, name, key)


class LocalWindows:
    """The windows in this process's memory, counted in one synchronous step.

    `limits`' own memory storage takes six awaited calls and a lock per request, and its
    numbers a second pass: a tenth of a list's time on the event loop. The arithmetic here
    is `limits`' own, expression for expression, so both answer alike (a test holds them to
    it); counts that no window can still see are swept once per longest window.
    """

    def __init__(self) -> None:
        # (name, key, amount, seconds) -> {period: hits in it}
        self._hits: dict[tuple[str, str, int, int], dict[int, int]] = {}
        self._longest = 0
        self._next_sweep = 0.0

    async def count(
        self, window: RateLimitItem, name: str, key: str, *, consume: bool
    ) -> WindowCount:
        now = time.time()
        expiry, amount = window.get_expiry(), window.amount
        hits = self._hits.get((name, key, amount, expiry))
        if hits is None:
            self._sweep(expiry, now)
            hits = self._hits[(name, key, amount, expiry)] = {}
        period, previous_period = int(now / expiry), int((now - expiry) / expiry)
        previous = hits.get(previous_period, 0)
        previous_ttl = (1 - (((now - expiry) / expiry) % 1)) * expiry if previous else 0.0
        weighted = previous * previous_ttl / expiry + hits.get(period, 0)
        if consume:
            allowed = amount >= 1 and math.floor(weighted) + 1 <= amount
        else:
            allowed = weighted < amount
        if consume and allowed:
            hits[period] = current = hits.get(period, 0) + 1
            weighted = previous * previous_ttl / expiry + current
            for old in [p for p in hits if p < previous_period]:
                del hits[old]
        remaining = max(0, amount - math.floor(weighted))
        frees_in = self._frees_in(previous, previous_ttl, hits.get(period, 0), expiry, now)
        return WindowCount(allowed, remaining, now + frees_in)

    async def clear(self, window: RateLimitItem, name: str, key: str) -> None:
        self._hits.pop((name, key, window.amount, window.get_expiry()), None)

    @staticmethod
    def _frees_in(
        previous: int, previous_ttl: float, current: int, expiry: int, now: float
    ) -> float:
        """Seconds until the window frees a request, as `limits` reckons it."""
        if not (current or previous):
            return 0.0
        previous_reset_in = current_reset_in = math.inf
        if previous:
            previous_reset_in = previous_ttl % (expiry / previous)
        if current:
            current_reset_in = ((1 - ((now / expiry) % 1)) * expiry + expiry) % expiry
        return min(previous_reset_in, current_reset_in)

    def _sweep(self, expiry: int, now: float) -> None:
        """Forget the callers whose hits no window can see any more (they went away)."""
        self._longest = max(self._longest, expiry)
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._longest
        gone = [
            entry
            for entry, hits in self._hits.items()
            if all(period < int((now - entry[3]) / entry[3]) for period in hits)
        ]
        for entry in gone:
            del self._hits[entry]
