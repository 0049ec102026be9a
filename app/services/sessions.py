"""Login sessions: the tokens a login gets, their renewal, and their end.

A login starts a session holding one refresh token (stored as a digest). Renewing hands out a
new pair and retires the old refresh token; a retired one presented again means someone kept a
copy, so the session ends for everyone holding it (RFC 9700 §4.14.2). Every access token names
its session (`sid`): ending the session ends them at once.
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from app import auth
from app.database import utcnow
from app.errors import NotAuthenticated, RefreshTokenReused
from app.models import LoginSession, User
from app.repositories import LoginSessionRepository, UserRepository
from app.settings import get_settings
from app.unit_of_work import UnitOfWork

BAD_REFRESH = "Invalid, expired or revoked refresh token"


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int


def _refresh_lifetime() -> timedelta:
    return timedelta(days=get_settings().refresh_token_expire_days)


def _issue(login: LoginSession) -> IssuedTokens:
    """New tokens for `login`: its refresh token is replaced by the one handed out here."""
    refresh_token = f"{login.id}.{secrets.token_urlsafe(32)}"
    login.refresh_hash = auth.digest(refresh_token)
    lifetime = auth.access_token_lifetime()
    access_token = auth.create_access_token({"sub": str(login.user_id), "sid": login.id}, lifetime)
    return IssuedTokens(access_token, refresh_token, int(lifetime.total_seconds()))


def start(uow: UnitOfWork, user_id: int) -> IssuedTokens:
    """A new login session for the user, and its first tokens."""
    now = utcnow()
    LoginSessionRepository(uow.session).delete_expired(user_id, now)  # tidy as we go
    login = LoginSession(id=auth.new_id(), user_id=user_id, expires_at=now + _refresh_lifetime())
    uow.session.add(login)
    return _issue(login)


def renew(uow: UnitOfWork, refresh_token: str) -> IssuedTokens:
    """New tokens for the session `refresh_token` belongs to, if it is that session's current
    one; a retired one ends the session (kept, though the answer is a 401)."""
    session_id = refresh_token.partition(".")[0]
    login = (
        LoginSessionRepository(uow.session).get_for_update(session_id)
        if session_id.isalnum() and session_id.isascii()
        else None
    )
    now = utcnow()
    if login is None or login.ended_at is not None or login.expires_at <= now:
        raise NotAuthenticated(BAD_REFRESH)
    if not secrets.compare_digest(login.refresh_hash or "", auth.digest(refresh_token)):
        login.ended_at = now
        raise RefreshTokenReused(BAD_REFRESH)
    user = UserRepository(uow.session).get(login.user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated(BAD_REFRESH)
    return _issue(login)


def end(uow: UnitOfWork, claims: auth.AccessClaims, user_id: int) -> None:
    """End the session an access token names; a token minted without a login gets a session
    row just to record that it ended (kept until the token expires)."""
    login = LoginSessionRepository(uow.session).get_for_update(claims.session_id)
    if login is None:
        login = LoginSession(id=claims.session_id, user_id=user_id, expires_at=claims.expires_at)
        uow.session.add(login)
    login.ended_at = login.ended_at or utcnow()


def end_all(uow: UnitOfWork, user: User) -> None:
    """Every token the user holds dies: sessions ended, older tokens refused."""
    now = utcnow()
    user.tokens_valid_after = now
    LoginSessionRepository(uow.session).end_all(user.id, now)
