"""Accounts: registration, login and who a token belongs to.

Password hashing is slow on purpose, so it never runs while a database connection is held:
registration is given the hash made beforehand, and a login is looked up first
(`login_candidate`), its connection given back, and only then checked (`check_password`).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import auth
from app.errors import Conflict, Forbidden, NotAuthenticated, NotFound
from app.models import User
from app.repositories import Caller, Reading, ResourceRepository, UserRepository, find_caller
from app.schemas import UserCreate, storable_text_problem
from app.services import resources, sessions
from app.unit_of_work import UnitOfWork

BAD_CREDENTIALS = "Incorrect username or password"
WRONG_PASSWORD = "The current password is incorrect"  # noqa: S105  (a message)
ADMINS_ONLY = "Only an admin may do this"
BAD_TOKEN = "Could not validate credentials"  # noqa: S105  (a message)
UNUSABLE_PASSWORD = "-"  # noqa: S105  (verified against the dummy hash, for timing only)


def register(
    uow: UnitOfWork, data: UserCreate, hashed_password: str, *, is_admin: bool = False
) -> User:
    """Add the user; `hashed_password` is `auth.hash_password(data.password)`, made earlier."""
    _ensure_free(uow, data.email, data.username)
    user = User(
        email=data.email, username=data.username, hashed_password=hashed_password, is_admin=is_admin
    )
    with _unique(uow.session):
        uow.session.add(user)
    return user


def _ensure_free(uow: UnitOfWork, email: str, username: str, but: int | None = None) -> None:
    taken = UserRepository(uow.session).taken(email, username, but)
    if taken:
        raise Conflict(f"A user with this {' and '.join(taken)} already exists")


@contextmanager
def _unique(session: Session) -> Iterator[None]:
    """Write in a savepoint: losing a race to a concurrent sign-up or rename is a 409 and
    leaves the session usable."""
    try:
        with session.begin_nested():
            yield
    except IntegrityError:
        raise Conflict("A user with this email or username already exists") from None


def change_profile(uow: UnitOfWork, user: User, changes: dict[str, str]) -> User:
    """A new email or username (409 when another user has it)."""
    _ensure_free(
        uow, changes.get("email", user.email), changes.get("username", user.username), user.id
    )
    with _unique(uow.session):
        for field, value in changes.items():
            setattr(user, field, value)
    return user


def verify_current_password(candidate: "LoginCandidate", password: str) -> None:
    """403 unless `password` is the candidate's (slow: the hash is verified)."""
    try:
        check_password(candidate, password)
    except NotAuthenticated:
        raise Forbidden(WRONG_PASSWORD) from None


def change_password(uow: UnitOfWork, user_id: int, hashed_password: str) -> User:
    """The new password, and every token issued before it dies."""
    user = _get(uow, user_id)
    user.hashed_password = hashed_password
    sessions.end_all(uow, user)
    return user


def delete_account(uow: UnitOfWork, user: User) -> None:
    """The user and all they own, each resource's deletion announced."""
    for resource in ResourceRepository(uow.session).owned_by(user.id):
        resources.delete(uow, resource)
    uow.session.delete(user)


def set_status(uow: UnitOfWork, admin: User, user_id: int, is_active: bool) -> User:
    """An admin (de)activates an account; deactivation ends its tokens at once."""
    if not admin.is_admin:
        raise Forbidden(ADMINS_ONLY)
    if user_id == admin.id:
        raise Conflict("Admins cannot change their own status")
    user = _get(uow, user_id)
    user.is_active = is_active
    if not is_active:
        sessions.end_all(uow, user)
    return user


def _get(uow: UnitOfWork, user_id: int) -> User:
    user = UserRepository(uow.session).get(user_id)
    if user is None:
        raise NotFound("User not found")
    return user


@dataclass(frozen=True)
class LoginCandidate:
    """What a login needs of an account, read before its connection is given back."""

    user_id: int
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
    return _candidate(user)


def candidate_from_token(session: Session, token: str | None) -> LoginCandidate:
    """What checking the bearer's password needs, read before the connection is given back."""
    return _candidate(from_token(session, token))


def _candidate(user: User) -> LoginCandidate:
    return LoginCandidate(user.id, user.email, user.hashed_password, user.is_active)


def check_password(candidate: LoginCandidate | None, password: str) -> LoginCandidate:
    """The candidate, if the password is right and the account active.

    Slow (the hash is verified), and as slow for unknown accounts as for known ones.
    """
    usable = not storable_text_problem(password)
    hashed = candidate.hashed_password if candidate and usable else None
    verified = auth.verify_password(password if usable else UNUSABLE_PASSWORD, hashed)
    if not verified or candidate is None or not candidate.is_active:
        raise NotAuthenticated(BAD_CREDENTIALS)
    return candidate


def from_token(session: Session, token: str | None) -> User:
    """The active user a bearer token names, or NotAuthenticated."""
    return authenticate(session, token)[0]


@dataclass(frozen=True)
class TokenHolder:
    """Who holds a token, and until when: what a long-lived connection keeps of its login."""

    user_id: int
    expires_at: datetime
    session_id: str
    issued_at: datetime


def token_holder(session: Session, token: str | None) -> TokenHolder:
    claims = read_claims(token)
    caller = caller_of(session, claims)
    return TokenHolder(caller.id, claims.expires_at, claims.session_id, claims.issued_at)


def authenticate(session: Session, token: str | None) -> tuple[User, auth.AccessClaims]:
    """The active user a token names, and its claims; NotAuthenticated if the token is bad,
    its user gone or inactive, issued before the user's `tokens_valid_after` (another account
    of the same email, a password change, logging out everywhere) or its session ended."""
    claims = read_claims(token)
    return holder_of(session, claims), claims


def read_claims(token: str | None) -> auth.AccessClaims:
    """What a token says, checked without the database (its signature, expiry and shape);
    NotAuthenticated if it is missing or bad. `holder_of` then finds who holds it."""
    if not token:
        raise NotAuthenticated("Not authenticated")
    try:
        claims = auth.read_access_token(token)
    except auth.InvalidToken:
        raise NotAuthenticated(BAD_TOKEN) from None
    if storable_text_problem(claims.subject):
        raise NotAuthenticated(BAD_TOKEN)
    return claims


def holder_of(session: Session, claims: auth.AccessClaims) -> User:
    """The active user whose valid login `claims` came from, or NotAuthenticated."""
    found = UserRepository(session).token_holder(claims.subject, claims.session_id)
    if found is None or not _valid(*found, claims.issued_at):
        raise NotAuthenticated(BAD_TOKEN)
    return found[0]


def caller_of(reading: Reading, claims: auth.AccessClaims) -> Caller:
    """`holder_of` for what needs only the caller's id and role (the resource writes, a
    check, a list's `mine`): a plain row, no ORM object."""
    caller = _valid_caller(reading, claims.subject, claims.session_id, claims.issued_at)
    if caller is None:
        raise NotAuthenticated(BAD_TOKEN)
    return caller


def caller_from_token(reading: Reading, token: str | None) -> Caller:
    """The active caller a bearer token names, or NotAuthenticated."""
    return caller_of(reading, read_claims(token))


def _valid(holder: User | Caller, session_ended: bool, issued_at: datetime) -> bool:
    """Whether a token issued at `issued_at` is still good: its holder active, its login
    session not ended, and no password change or "log out everywhere" since."""
    return not session_ended and holder.is_active and issued_at >= holder.tokens_valid_after


def _valid_caller(
    reading: Reading, subject: str, session_id: str, issued_at: datetime
) -> Caller | None:
    found = find_caller(reading, subject, session_id)
    return found[0] if found is not None and _valid(*found, issued_at) else None


def still_valid(session: Session, holder: TokenHolder) -> bool:
    """Whether a token accepted earlier would still be, but for its expiry (which a long-lived
    connection watches by itself)."""
    caller = _valid_caller(session, str(holder.user_id), holder.session_id, holder.issued_at)
    return caller is not None
