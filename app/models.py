"""The data: users and the resources they own."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column, orm_insert_sentinel, relationship

from app.database import Base, UTCDateTime, utcnow

# Largest id a client may name: ids are 32-bit on every backend.
MAX_ID = 2**31 - 1
NAME_MAX_LENGTH = 255
USERNAME_MAX_LENGTH = 50
EMAIL_MAX_LENGTH = 320
SESSION_ID_LENGTH = 32
IDEMPOTENCY_KEY_MAX_LENGTH = 255

# PostgreSQL's `json`, not `jsonb`: it keeps any JSON text, NUL escapes included (`jsonb`
# refuses them), and nothing queries inside metadata.
JSONDocument = JSON()


def id_can_exist(row_id: int) -> bool:
    """Whether a row could have this id (any other is missing, and may not fit the column)."""
    return 1 <= row_id <= MAX_ID


def _same_as_created_at(context: DefaultExecutionContext) -> datetime:
    created_at: datetime = context.get_current_parameters()["created_at"]  # type: ignore[no-untyped-call]
    return created_at


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), unique=True)
    # NULL means "cannot log in with a password" (accounts made by other means).
    hashed_password: Mapped[str | None] = mapped_column(String(255), default=None)
    is_active: Mapped[bool] = mapped_column(default=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Tokens issued before this are refused: those of an earlier account with the same email,
    # and every token once the password changes or the user logs out everywhere.
    tokens_valid_after: Mapped[datetime] = mapped_column(UTCDateTime, default=_same_as_created_at)

    resources: Mapped[list["Resource"]] = relationship(
        back_populates="owner", cascade="all, delete-orphan", passive_deletes=True
    )


class LoginSession(Base):
    """One login: the refresh token it holds now, and whether it was ended.

    Its access tokens name it (`sid`), so ending it (log out, a reused refresh token) ends them
    at once, in every worker, as the database is shared.
    """

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(SESSION_ID_LENGTH), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the current refresh token; any earlier one presented again means theft.
    refresh_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Resource(Base):
    __tablename__ = "resources"
    # One owner's resources in id order, and everyone's by name or creation time: each list
    # pages by key, at any depth.
    __table_args__ = (
        Index("ix_resources_owner_id_id", "owner_id", "id"),
        Index("ix_resources_name_id", "name", "id"),
        Index("ix_resources_created_at_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    # `metadata` is reserved on declarative classes; the column and the API keep the name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDocument, default=dict)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=_same_as_created_at, onupdate=utcnow
    )

    # Counts the writes: each UPDATE adds one (and checks it, SQLAlchemy's version_id_col).
    # The answers' ETag, and what a client's If-Match names.
    version: Mapped[int] = mapped_column(Integer, default=1)

    owner: Mapped[User] = relationship(back_populates="resources")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012  (SQLAlchemy reads a dict)

    # Always NULL. It lets SQLite, whose new row ids cannot be matched to the inserted rows
    # otherwise, take a bulk create in one INSERT … RETURNING instead of one per row.
    _sentinel: Mapped[int | None] = orm_insert_sentinel()


class IdempotencyRecord(Base):
    """The answer to a write made with an `Idempotency-Key`: what a retry of it gets instead
    of a second write, until it expires."""

    __tablename__ = "idempotency_records"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LENGTH), primary_key=True)
    # SHA-256 of the method, path and canonical body: the same key with another request is an error.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
