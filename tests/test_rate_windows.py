"""The in-process windows count as the `limits` library's own memory storage does: the same
decisions, remaining counts and waits for any run of hits, checks, clears and clock moves."""

import asyncio
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from limits.aio.storage import MemoryStorage

from app.rate_limits import Decision, Policy, RateLimiter
from app.rate_windows import LocalWindows, StoredWindows

POLICIES = [
    Policy.parse("reads", "3/second"),
    Policy.parse("login", "2/10 seconds;5/minute"),
    Policy.parse("writes", "4/minute;6/hour"),
    Policy.parse("closed", "0/minute"),
]

operations = st.lists(
    st.tuples(
        st.sampled_from(["hit", "check", "clear"]),
        st.sampled_from(["192.0.2.1", "192.0.2.2"]),
        st.integers(0, 90_000).map(lambda milliseconds: milliseconds / 1000),
    ),
    max_size=60,
)


async def answers(limiter: RateLimiter, policy: Policy, steps: list, clock: list[float]) -> list:
    said: list[Decision | None] = []
    for operation, key, wait in steps:
        clock[0] += wait
        if operation == "clear":
            await limiter.clear(policy, key)
            said.append(None)
        else:
            said.append(await getattr(limiter, operation)(policy, key))
    return said


@settings(max_examples=150, deadline=None)
@given(
    policy=st.sampled_from(POLICIES),
    steps=operations,
    start=st.floats(1.7e9, 1.8e9, allow_nan=False),
)
def test_local_windows_answer_as_the_limits_library_does(
    policy: Policy, steps: list, start: float
) -> None:
    def run(limiter: RateLimiter) -> list:
        clock = [start]
        with patch("time.time", lambda: clock[0]):
            return asyncio.run(answers(limiter, policy, steps, clock))

    assert run(RateLimiter(LocalWindows())) == run(RateLimiter(StoredWindows(MemoryStorage())))


@pytest.mark.asyncio
async def test_callers_who_went_away_are_forgotten() -> None:
    """Memory stays bounded by the callers of the last window, not every caller ever seen."""
    windows = LocalWindows()
    limiter = RateLimiter(windows)
    policy = Policy.parse("reads", "3/second")
    clock = [1.8e9]
    with patch("time.time", lambda: clock[0]):
        for caller in range(100):
            await limiter.hit(policy, f"198.51.100.{caller}")
        assert len(windows._hits) == 100
        clock[0] += 2.5  # past both of the windows' periods
        await limiter.hit(policy, "192.0.2.1")
        assert len(windows._hits) == 1
        assert (await limiter.hit(policy, "192.0.2.1")).remaining == 1
