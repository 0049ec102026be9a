"""Tokens: log in, renew, log out (here, or everywhere)."""

from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import (
    CurrentLogin,
    CurrentUser,
    Gate,
    PasswordHashing,
    UngatedSession,
    Work,
    in_own_unit_of_work,
    run_with_connection,
)
from app.api.openapi import may_answer
from app.api.rate_limiting import Lockout, LoginLimit
from app.errors import NotAuthenticated
from app.schemas import RefreshRequest, Token
from app.services import sessions, users

router = APIRouter(prefix="/auth", tags=["auth"])


def token_answer(response: Response, tokens: sessions.IssuedTokens) -> Token:
    """Tokens are never cached (RFC 6749 §5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return Token(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


@router.post("/token", response_model=Token, operation_id="auth-login")
@may_answer(401)
async def login(
    _limit: LoginLimit,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    response: Response,
    session: UngatedSession,
    gate: Gate,
    hashing: PasswordHashing,
    lockout: Lockout,
) -> Token:
    """OAuth2 password flow; `username` may be the email or the username. Starts a login
    session: a short access token and a refresh token."""
    candidate = await run_with_connection(gate, session, users.login_candidate, form.username)
    account = candidate.email if candidate else form.username.lower()
    check = partial(
        anyio.to_thread.run_sync, users.check_password, candidate, form.password, limiter=hashing
    )
    verified = await lockout.guard(account, check, refused=NotAuthenticated)
    tokens = await run_with_connection(
        gate, session, in_own_unit_of_work, sessions.start, verified.user_id
    )
    return token_answer(response, tokens)


@router.post("/refresh", response_model=Token, operation_id="auth-refresh")
@may_answer(401)
def refresh(_limit: LoginLimit, data: RefreshRequest, uow: Work, response: Response) -> Token:
    """New tokens for a refresh token, which is then spent: presenting it again ends its
    login session (someone kept a copy)."""
    return token_answer(response, sessions.renew(uow, data.refresh_token))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, operation_id="auth-logout")
def logout(login: CurrentLogin, uow: Work) -> None:
    """End this login session: its access and refresh tokens stop working, in every worker."""
    user, claims = login
    sessions.end(uow, claims, user.id)


@router.post(
    "/logout-everywhere",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="auth-logout-everywhere",
)
def logout_everywhere(user: CurrentUser, uow: Work) -> None:
    """End every login session of the caller's, and every token issued until now."""
    sessions.end_all(uow, user)
