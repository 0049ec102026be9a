from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app import auth
from app.api.deps import (
    CurrentUser,
    Gate,
    HashedPassword,
    PasswordHashing,
    UngatedSession,
    Work,
    run_with_connection,
)
from app.api.openapi import may_answer
from app.api.rate_limiting import Lockout, LoginLimit, ReadLimit, RegistrationLimit
from app.errors import NotAuthenticated
from app.schemas import Token, UserCreate, UserOut
from app.services import users

router = APIRouter(tags=["users"])


# Dependencies run in order: the rate limit, then the hash, and only then the unit of work
# takes a connection.
@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    operation_id="users-register",
)
@may_answer(409)
def register(
    _limit: RegistrationLimit, data: UserCreate, hashed: HashedPassword, uow: Work
) -> UserOut:
    return UserOut.model_validate(users.register(uow, data, hashed))


@router.post("/auth/token", response_model=Token, tags=["auth"], operation_id="auth-login")
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
    """OAuth2 password flow; `username` may be the email or the username."""
    candidate = await run_with_connection(gate, session, users.login_candidate, form.username)
    account = candidate.email if candidate else form.username.lower()
    await lockout.ensure_open(account)  # before hashing: a locked account costs nothing
    try:
        email = await anyio.to_thread.run_sync(
            users.check_password, candidate, form.password, limiter=hashing
        )
    except NotAuthenticated:
        await lockout.failed(account)
        raise
    await lockout.succeeded(account)
    response.headers["Cache-Control"] = "no-store"  # a token is never cached (RFC 6749 §5.1)
    response.headers["Pragma"] = "no-cache"
    lifetime = auth.access_token_lifetime()
    return Token(
        access_token=auth.create_access_token({"sub": email}, lifetime),
        expires_in=int(lifetime.total_seconds()),
    )


@router.get("/users/me", response_model=UserOut, operation_id="users-me")
def me(_limit: ReadLimit, user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
