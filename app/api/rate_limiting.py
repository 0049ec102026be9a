"""Rate limits as dependencies: by client address before any work, by user for writes.

The client address is the peer's, or what a trusted proxy says it is (TRUSTED_PROXIES,
applied by the server before the app sees the request): a client cannot choose its own.
"""

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Response
from starlette.requests import HTTPConnection

from app.api.deps import CurrentUser
from app.api.openapi import may_answer
from app.errors import TooManyRequests
from app.rate_limits import Policies, Policy, RateLimits

T = TypeVar("T")

TOO_MANY = "Too many requests; retry after {seconds} s"


def rate_limits(connection: HTTPConnection) -> RateLimits | None:
    limits: RateLimits | None = connection.app.state.rate_limits
    return limits


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


async def enforce(limits: RateLimits, policy: Policy, key: str, response: Response) -> None:
    """Count one request; 429 with the headers when over, the headers on the answer if not."""
    decision = await limits.limiter.hit(policy, key)
    if not decision.allowed:
        headers = decision.headers()
        raise TooManyRequests(TOO_MANY.format(seconds=headers["Retry-After"]), headers)
    response.headers.update(decision.headers())


def by_address(choose: Callable[[Policies], Policy]) -> Callable[..., Awaitable[None]]:
    @may_answer(429)
    async def limit(connection: HTTPConnection, response: Response) -> None:
        limits = rate_limits(connection)
        if limits is not None:
            policy = choose(limits.policies)
            await enforce(limits, policy, client_address(connection), response)

    return limit


@may_answer(429)
async def limit_writes(user: CurrentUser, connection: HTTPConnection, response: Response) -> None:
    limits = rate_limits(connection)
    if limits is not None:
        await enforce(limits, limits.policies.writes_per_user, str(user.id), response)


ReadLimit = Annotated[None, Depends(by_address(lambda policies: policies.reads_per_address))]
RegistrationLimit = Annotated[
    None, Depends(by_address(lambda policies: policies.registrations_per_address))
]
LoginLimit = Annotated[None, Depends(by_address(lambda policies: policies.login_per_address))]
WriteLimit = Annotated[None, Depends(limit_writes)]


class AccountLockout:
    """Failed logins per account: past a window's quota the account is locked for the rest of
    that window; the windows grow, and so does the lockout. A success clears the count."""

    def __init__(self, limits: RateLimits | None) -> None:
        self._limits = limits

    @staticmethod
    def _key(account: str) -> str:
        # The login is the client's text, of any length: store a fixed-size digest of it.
        return hashlib.sha256(account.encode("utf-8", "surrogatepass")).hexdigest()

    async def guard(
        self, account: str, check: Callable[[], Awaitable[T]], refused: type[Exception]
    ) -> T:
        """`check()`, a password check for `account`, unless the account is locked (asked
        first, so a locked account costs no hash): a `refused` failure counts towards the
        lockout, a success clears the count."""
        await self._ensure_open(account)
        try:
            result = await check()
        except refused:
            await self._failed(account)
            raise
        await self._succeeded(account)
        return result

    async def _ensure_open(self, account: str) -> None:
        if self._limits is None:
            return
        policy = self._limits.policies.login_failures_per_account
        decision = await self._limits.limiter.check(policy, self._key(account))
        if not decision.allowed:
            headers = decision.headers()
            raise TooManyRequests(
                f"Too many failed logins; retry after {headers['Retry-After']} s", headers
            )

    async def _failed(self, account: str) -> None:
        if self._limits is not None:
            policy = self._limits.policies.login_failures_per_account
            await self._limits.limiter.hit(policy, self._key(account))

    async def _succeeded(self, account: str) -> None:
        if self._limits is not None:
            policy = self._limits.policies.login_failures_per_account
            await self._limits.limiter.clear(policy, self._key(account))


@may_answer(429)
def account_lockout(connection: HTTPConnection) -> AccountLockout:
    return AccountLockout(rate_limits(connection))


Lockout = Annotated[AccountLockout, Depends(account_lockout)]
