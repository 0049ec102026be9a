"""Security primitives: password hashing, and access tokens (HS256 JWTs naming a user)."""

import hashlib
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from app.settings import get_settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "iss", "aud", "sid"]


class InvalidToken(Exception):
    """Any reason a token cannot be trusted; the reason itself is not shown to clients."""


@cache
def _password_hash() -> PasswordHash:
    settings = get_settings()
    return PasswordHash(
        (
            Argon2Hasher(
                time_cost=settings.password_hash_time_cost,
                memory_cost=settings.password_hash_memory_kib,
            ),
        )
    )


@cache
def _dummy_hash() -> str:
    return _password_hash().hash("a password nobody has, for timing only")


def hash_password(password: str) -> str:
    return _password_hash().hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """Check a password; with no hash, still spend the same time so timing reveals nothing."""
    if hashed is None:
        _password_hash().verify(password, _dummy_hash())
        return False
    return _password_hash().verify(password, hashed)


def access_token_lifetime() -> timedelta:
    return timedelta(minutes=get_settings().access_token_expire_minutes)


def new_id() -> str:
    """A random id for a token or a login session (128 bits, hex)."""
    return secrets.token_hex(16)


def create_access_token(data: dict[str, Any], expires_delta: timedelta | None = None) -> str:
    """A signed token with `data` (at least `sub`: a user's id or email).

    Without a `sid` (a login session's id) it gets one of its own, so that it can still be
    logged out. `iat` keeps its microseconds: a token is refused if issued before its user's
    `tokens_valid_after`, which a password change sets to the moment it happens.
    """
    settings = get_settings()
    now = datetime.now(UTC)
    claims = {
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "jti": new_id(),
        "sid": new_id(),
        **data,
        "iat": now.timestamp(),
        "exp": now + (expires_delta or access_token_lifetime()),
    }
    return jwt.encode(claims, settings.signing_key, algorithm=ALGORITHM)


@dataclass(frozen=True)
class AccessClaims:
    subject: str
    session_id: str
    issued_at: datetime
    expires_at: datetime


def read_access_token(token: str) -> AccessClaims:
    """What a valid token says, or InvalidToken."""
    settings = get_settings()
    claims = _verified(token, settings.signing_key, settings.token_audience, settings.token_issuer)
    # The one check that changes with time (`iat` and `nbf` once past stay past).
    if claims.expires_at.timestamp() <= time.time():
        raise InvalidToken("Signature has expired")
    return claims


# Clients send the same token with every request: its signature and claims are checked once,
# its expiry every time. Only a token that passed is remembered, so a flood of bad tokens is
# checked in full each time, as before; what its holder may do is asked of the database.
TOKENS_REMEMBERED = 1024


@lru_cache(maxsize=TOKENS_REMEMBERED)
def _verified(token: str, key: str, audience: str, issuer: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    subject, session_id, issued_at = claims["sub"], claims["sid"], claims["iat"]
    for name, value in (("sub", subject), ("sid", session_id)):
        if not isinstance(value, str) or not value:
            raise InvalidToken(f"{name} must be a non-empty string")
    if not isinstance(issued_at, int | float) or not math.isfinite(issued_at):
        raise InvalidToken("iat must be a number")
    return AccessClaims(
        subject,
        session_id,
        datetime.fromtimestamp(issued_at, UTC),
        datetime.fromtimestamp(claims["exp"], UTC),
    )


def digest(token: str) -> str:
    """What is stored of a refresh token: enough to recognise it, useless to a thief."""
    return hashlib.sha256(token.encode()).hexdigest()
