"""Accounts: registration, login and who a token belongs to.

Password hashing is slow on purpose, so it never runs while a database connection is held:
registration is given the hash made beforehand, and a login is looked up first
(`login_candidate`), its connection given back, and only then checked (`check_password`).
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import auth
from app.errors import Conflict, NotAuthenticated
from app.models import User
from app.repositories import UserRepository
from app.schemas import UserCreate, storable_text_problem
from app.unit_of_work import UnitOfWork

BAD_CREDENTIALS = "Incorrect username or password"
BAD_TOKEN = "Could not validate credentials"  # noqa: S105  (a message)
UNUSABLE_PASSWORD = "-"  # noqa: S105  (verified against the dummy hash, for timing only)


def register(uow: UnitOfWork, data: UserCreate, hashed_password: str) -> User:
    """Add the user; `hashed_password` is `auth.hash_password(data.password)`, made earlier."""
    users = UserRepository(uow.session)
    taken = users.taken(data.email, data.username)
    if taken:
        raise Conflict(f"A user with this {' and '.join(taken)} already exists")
    user = User(email=data.email, username=data.username, hashed_password=hashed_password)
    try:
        # A savepoint, so that losing a race to a concurrent sign-up leaves the session usable.
        with uow.session.begin_nested():
            uow.session.add(user)
    except IntegrityError:
        raise Conflict("A user with this email or username already exists") from None
    return user


@dataclass(frozen=True)
class LoginCandidate:
    """What a login needs of an account, read before its connection is given back."""

    email: str
    hashed_password: str | None
    is_active: bool


def login_candidate(session: Session, login: str) -> LoginCandidate | None:
    """The account `login` (its email or username) names, if it can name one."""
    if storable_text_problem(login):
        return None  # no account can have such a name
    user = UserRepository(session).by_login(login.lower() if "@" in login else login)
    if user is None:
        return None
    return LoginCandidate(user.email, user.hashed_password, user.is_active)


def check_password(candidate: LoginCandidate | None, password: str) -> str:
    """The candidate's email if the password is right and the account active.

    Slow (the hash is verified), and as slow for unknown accounts as for known ones.
    """
    usable = not storable_text_problem(password)
    hashed = candidate.hashed_password if candidate and usable else None
    verified = auth.verify_password(password if usable else UNUSABLE_PASSWORD, hashed)
    if not verified or candidate is None or not candidate.is_active:
        raise NotAuthenticated(BAD_CREDENTIALS)
    return candidate.email


def from_token(session: Session, token: str | None) -> User:
    """The active user a bearer token names, or NotAuthenticated."""
    return _holder(session, token)[0]


@dataclass(frozen=True)
class TokenHolder:
    """Who holds a token, and until when: what a long-lived connection keeps of its login."""

    user_id: int
    expires_at: datetime


def token_holder(session: Session, token: str | None) -> TokenHolder:
    user, expires_at = _holder(session, token)
    return TokenHolder(user.id, expires_at)


def _holder(session: Session, token: str | None) -> tuple[User, datetime]:
    if not token:
        raise NotAuthenticated("Not authenticated")
    try:
        email, expires_at = auth.read_access_token(token)
    except auth.InvalidToken:
        raise NotAuthenticated(BAD_TOKEN) from None
    if storable_text_problem(email):
        raise NotAuthenticated(BAD_TOKEN)
    user = UserRepository(session).by_email(email)
    if user is None or not user.is_active:
        raise NotAuthenticated(BAD_TOKEN)
    return user, expires_at


def is_active(session: Session, user_id: int) -> bool:
    """Whether the user still exists and may still act."""
    return UserRepository(session).is_active(user_id)
