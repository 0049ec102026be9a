"""What the API reads and writes. Every rule about the *shape* of input lives here."""

import json
import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

from app.models import NAME_MAX_LENGTH, USERNAME_MAX_LENGTH

METADATA_MAX_DEPTH = 32
METADATA_MAX_BYTES = 64 * 1024
DESCRIPTION_MAX_LENGTH = 10_000
PASSWORD_MIN_LENGTH = 15  # NIST SP 800-63B-4, single-factor passwords
PASSWORD_MAX_LENGTH = 128
BULK_MAX_ITEMS = 1000


def storable_text_problem(value: str) -> str | None:
    """Why a database could not keep `value` (NUL for PostgreSQL, lone surrogates for UTF-8)."""
    if "\x00" in value:
        return "Text must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Text must be valid Unicode (no lone surrogates)"
    return None


def _storable_text(value: str) -> str:
    if problem := storable_text_problem(value):
        raise ValueError(problem)
    return value


def _checked_text(value: object) -> object:
    return _storable_text(value) if isinstance(value, str) else value


SafeStr = Annotated[str, AfterValidator(_storable_text)]


def _resource_name(value: str) -> str:
    if not value.strip():
        raise ValueError("Name cannot be empty")
    if len(value) > NAME_MAX_LENGTH:
        raise ValueError("Name too long")
    return value


ResourceName = Annotated[SafeStr, AfterValidator(_resource_name)]
Description = Annotated[SafeStr, Field(max_length=DESCRIPTION_MAX_LENGTH)]


def _metadata_object(value: object) -> dict[str, Any]:
    """A JSON object that every backend can store and every reader can parse back."""
    if not isinstance(value, dict):
        raise ValueError("Metadata must be object")
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            if depth > METADATA_MAX_DEPTH:
                raise ValueError(f"Metadata nested deeper than {METADATA_MAX_DEPTH} levels")
            for key, child in node.items():
                _storable_text(key)
                pending.append((child, depth + 1))
        elif isinstance(node, list):
            if depth > METADATA_MAX_DEPTH:
                raise ValueError(f"Metadata nested deeper than {METADATA_MAX_DEPTH} levels")
            pending.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            _storable_text(node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError("Metadata numbers must be finite (no NaN or Infinity)")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"Metadata larger than {METADATA_MAX_BYTES} bytes")
    return value


Metadata = Annotated[dict[str, Any], BeforeValidator(_metadata_object)]


class ResourceCreate(BaseModel):
    """Create or replace (PUT): fields left out take their defaults."""

    name: ResourceName
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)


class ResourcePatch(BaseModel):
    """PATCH: only the fields given change; `description: null` clears it."""

    name: ResourceName | None = None
    description: Description | None = None
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> "ResourcePatch":
        fields_set = self.model_fields_set
        if "name" in fields_set and self.name is None:
            raise ValueError("Name cannot be null")
        if "metadata" in fields_set and self.metadata is None:
            raise ValueError("Metadata must be object")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class ResourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    owner_id: int
    created_at: datetime
    updated_at: datetime


Username = Annotated[
    SafeStr,
    StringConstraints(min_length=1, max_length=USERNAME_MAX_LENGTH, pattern=r"^[A-Za-z0-9_.\-]+$"),
]
Password = Annotated[SafeStr, Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)]


class UserCreate(BaseModel):
    # Lower-cased whole: mail systems treat addresses case-insensitively, so must uniqueness.
    email: Annotated[EmailStr, BeforeValidator(_checked_text), AfterValidator(str.lower)]
    username: Username
    password: Password


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    username: str
    is_active: bool
    created_at: datetime


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105  (a scheme name, not a secret)
    expires_in: int


class AccountSummary(BaseModel):
    user_id: int
    resource_count: int
    live_subscribers: int
