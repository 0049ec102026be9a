"""Accounts: sign up, one's own account, and an admin's say over others'."""

from dataclasses import dataclass
from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Response, status

from app import auth
from app.api.deps import (
    BearerToken,
    CurrentUser,
    Gate,
    HashedPassword,
    PasswordHashing,
    UngatedSession,
    Work,
    run_with_connection,
)
from app.api.openapi import may_answer
from app.api.rate_limiting import Lockout, LoginLimit, ReadLimit, RegistrationLimit, WriteLimit
from app.api.routes.auth import token_answer
from app.errors import Forbidden
from app.schemas import PasswordChange, ProfileChange, Token, UserCreate, UserOut, UserStatus
from app.services import sessions, users

router = APIRouter(prefix="/users", tags=["users"])


# Dependencies run in order: the rate limit, then the hash, and only then the unit of work
# takes a connection.
@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    operation_id="users-register",
)
@may_answer(409)
def register(
    _limit: RegistrationLimit, data: UserCreate, hashed: HashedPassword, uow: Work
) -> UserOut:
    return UserOut.model_validate(users.register(uow, data, hashed))


@router.get("/me", response_model=UserOut, operation_id="users-me")
def me(_limit: ReadLimit, user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.patch("/me", response_model=UserOut, operation_id="users-change-profile")
@may_answer(409)
def change_profile(
    data: ProfileChange, user: CurrentUser, _limit: WriteLimit, uow: Work
) -> UserOut:
    """A new email or username. Tokens name the account, not its email, so they keep working."""
    return UserOut.model_validate(users.change_profile(uow, user, data.changes()))


@dataclass(frozen=True)
class NewPassword:
    user_id: int
    hashed_password: str


@may_answer(401, 403, 429, 503)
async def verified_password_change(
    data: PasswordChange,
    session: UngatedSession,
    gate: Gate,
    token: BearerToken,
    hashing: PasswordHashing,
    lockout: Lockout,
) -> NewPassword:
    """The caller's new password hash, once the current password is verified: both hashes
    made holding no connection, before the route's unit of work takes one. Wrong current
    passwords count towards the account's lockout, as failed logins do."""
    candidate = await run_with_connection(gate, session, users.candidate_from_token, token)
    check = partial(
        anyio.to_thread.run_sync,
        users.verify_current_password,
        candidate,
        data.current_password,
        limiter=hashing,
    )
    await lockout.guard(candidate.email, check, refused=Forbidden)
    hashed = await anyio.to_thread.run_sync(auth.hash_password, data.new_password, limiter=hashing)
    return NewPassword(candidate.user_id, hashed)


@router.put("/me/password", response_model=Token, operation_id="users-change-password")
def change_password(
    _limit: LoginLimit,
    change: Annotated[NewPassword, Depends(verified_password_change)],
    uow: Work,
    response: Response,
) -> Token:
    """Every token issued until now stops working; the answer holds new ones for the caller."""
    user = users.change_password(uow, change.user_id, change.hashed_password)
    return token_answer(response, sessions.start(uow, user.id))


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, operation_id="users-delete-me")
def delete_me(user: CurrentUser, _limit: WriteLimit, uow: Work) -> None:
    """The account and every resource it owns (each deletion announced); its tokens die."""
    users.delete_account(uow, user)


@router.patch("/{user_id:int}", response_model=UserOut, operation_id="users-set-status")
@may_answer(403, 404, 409)
def set_status(
    user_id: int, data: UserStatus, admin: CurrentUser, _limit: WriteLimit, uow: Work
) -> UserOut:
    """Admins only: deactivate (its tokens die at once) or reactivate an account."""
    return UserOut.model_validate(users.set_status(uow, admin, user_id, data.is_active))
