"""Accounts: registration, login and who a token belongs to."""

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


def register(uow: UnitOfWork, data: UserCreate) -> User:
    users = UserRepository(uow.session)
    taken = users.taken(data.email, data.username)
    if taken:
        raise Conflict(f"A user with this {' and '.join(taken)} already exists")
    user = User(
        email=data.email,
        username=data.username,
        hashed_password=auth.hash_password(data.password),
    )
    try:
        # A savepoint, so that losing a race to a concurrent sign-up leaves the session usable.
        with uow.session.begin_nested():
            uow.session.add(user)
    except IntegrityError:
        raise Conflict("A user with this email or username already exists") from None
    return user


def authenticate(session: Session, login: str, password: str) -> User:
    """The active user with these credentials; unknown users cost the same time as known ones."""
    if storable_text_problem(login) or storable_text_problem(password):
        # No account can have such a name or password; still spend a verification's time.
        auth.verify_password(UNUSABLE_PASSWORD, None)
        raise NotAuthenticated(BAD_CREDENTIALS)
    user = UserRepository(session).by_login(login.lower() if "@" in login else login)
    hashed = user.hashed_password if user else None
    if not auth.verify_password(password, hashed) or user is None or not user.is_active:
        raise NotAuthenticated(BAD_CREDENTIALS)
    return user


def from_token(session: Session, token: str | None) -> User:
    """The active user a bearer token names, or NotAuthenticated."""
    if not token:
        raise NotAuthenticated("Not authenticated")
    try:
        email = auth.decode_access_token(token)
    except auth.InvalidToken:
        raise NotAuthenticated(BAD_TOKEN) from None
    if storable_text_problem(email):
        raise NotAuthenticated(BAD_TOKEN)
    user = UserRepository(session).by_email(email)
    if user is None or not user.is_active:
        raise NotAuthenticated(BAD_TOKEN)
    return user
