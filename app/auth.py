"""Security primitives: password hashing, and access tokens (HS256 JWTs naming an email)."""

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from app.settings import get_settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub"]


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


def create_access_token(data: dict[str, Any], expires_delta: timedelta | None = None) -> str:
    now = datetime.now(UTC)
    claims = {**data, "iat": now, "exp": now + (expires_delta or access_token_lifetime())}
    return jwt.encode(claims, get_settings().signing_key, algorithm=ALGORITHM)


def read_access_token(token: str) -> tuple[str, datetime]:
    """The token's subject and when it expires, or InvalidToken."""
    try:
        claims = jwt.decode(
            token,
            get_settings().signing_key,
            algorithms=[ALGORITHM],
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("subject must be a non-empty string")
    return subject, datetime.fromtimestamp(claims["exp"], UTC)
