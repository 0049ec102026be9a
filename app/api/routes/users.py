from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, status
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
from app.schemas import Token, UserCreate, UserOut
from app.services import users

router = APIRouter(tags=["users"])


# The password is hashed (HashedPassword) before the unit of work takes a connection.
@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserOut)
def register(data: UserCreate, hashed: HashedPassword, uow: Work) -> UserOut:
    return UserOut.model_validate(users.register(uow, data, hashed))


@router.post("/auth/token", response_model=Token)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: UngatedSession,
    gate: Gate,
    hashing: PasswordHashing,
) -> Token:
    """OAuth2 password flow; `username` may be the email or the username."""
    candidate = await run_with_connection(gate, session, users.login_candidate, form.username)
    email = await anyio.to_thread.run_sync(
        users.check_password, candidate, form.password, limiter=hashing
    )
    lifetime = auth.access_token_lifetime()
    return Token(
        access_token=auth.create_access_token({"sub": email}, lifetime),
        expires_in=int(lifetime.total_seconds()),
    )


@router.get("/users/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
