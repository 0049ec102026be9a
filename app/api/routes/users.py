from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from app import auth
from app.api.deps import CurrentUser, DbSession, Work
from app.schemas import Token, UserCreate, UserOut
from app.services import users

router = APIRouter(tags=["users"])


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserOut)
def register(data: UserCreate, uow: Work) -> UserOut:
    return UserOut.model_validate(users.register(uow, data))


@router.post("/auth/token", response_model=Token)
def login(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: DbSession) -> Token:
    """OAuth2 password flow; `username` may be the email or the username."""
    user = users.authenticate(session, form.username, form.password)
    lifetime = auth.access_token_lifetime()
    return Token(
        access_token=auth.create_access_token({"sub": user.email}, lifetime),
        expires_in=int(lifetime.total_seconds()),
    )


@router.get("/users/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
