"""What the API reads and writes. Every rule about the *shape* of input lives here."""

import math
import re
from datetime import datetime
from typing import Annotated, Any

import pydantic_core
from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)

from app.models import NAME_MAX_LENGTH, USERNAME_MAX_LENGTH

METADATA_MAX_DEPTH = 32
METADATA_MAX_BYTES = 64 * 1024
DESCRIPTION_MAX_LENGTH = 10_000
PASSWORD_MIN_LENGTH = 15  # NIST SP 800-63B-4, single-factor passwords
PASSWORD_MAX_LENGTH = 128
BULK_MAX_ITEMS = 1000


def _unicode_problem(value: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Text must be valid Unicode (no lone surrogates)"
    return None


def storable_text_problem(value: str) -> str | None:
    """Why a text column could not keep `value` (NUL for PostgreSQL, lone surrogates for UTF-8)."""
    if "\x00" in value:
        return "Text must not contain NUL characters"
    return _unicode_problem(value)


def _raise_if(problem: str | None) -> None:
    if problem:
        raise ValueError(problem)


def _storable_text(value: str) -> str:
    _raise_if(storable_text_problem(value))
    return value


def _checked_text(value: object) -> object:
    return _storable_text(value) if isinstance(value, str) else value


# The same rules for the OpenAPI document (JSON Schema patterns), so that generated clients
# and fuzzers know them: no NUL; a name holds something besides blanks. Lone surrogates are
# not Unicode text, so JSON Schema strings hold none and the patterns need not name them.
STORABLE_PATTERN = r"^[^\u0000]*$"
# Blank by either ECMAScript's `\s` or Python's `str.isspace`, spelt out so that the document
# and the check below agree on every character.
_BLANKS = (
    r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a"
    r"\u2028\u2029\u202f\u205f\u3000\ufeff"
)
NOT_BLANK_PATTERN = rf"^[^\u0000]*[^\u0000{_BLANKS}][^\u0000]*$"
_SOMETHING_BESIDES_BLANKS = re.compile(rf"[^{_BLANKS}]")

SafeStr = Annotated[str, AfterValidator(_storable_text)]
StorableStr = Annotated[SafeStr, Field(json_schema_extra={"pattern": STORABLE_PATTERN})]


def _resource_name(value: str) -> str:
    if not _SOMETHING_BESIDES_BLANKS.search(value):
        raise ValueError("Name cannot be empty")
    if len(value) > NAME_MAX_LENGTH:
        raise ValueError("Name too long")
    return value


# Checked by `_resource_name`, for the seed's messages; the document states the same limits.
_NAME_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": NAME_MAX_LENGTH,
    "pattern": NOT_BLANK_PATTERN,
}
ResourceName = Annotated[SafeStr, AfterValidator(_resource_name), WithJsonSchema(_NAME_SCHEMA)]
Description = Annotated[StorableStr, Field(max_length=DESCRIPTION_MAX_LENGTH)]


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
                _raise_if(_unicode_problem(key))
                pending.append((child, depth + 1))
        elif isinstance(node, list):
            if depth > METADATA_MAX_DEPTH:
                raise ValueError(f"Metadata nested deeper than {METADATA_MAX_DEPTH} levels")
            pending.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            _raise_if(_unicode_problem(node))
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError("Metadata numbers must be finite (no NaN or Infinity)")
    size = len(pydantic_core.to_json(value))  # the compact UTF-8 text, as json.dumps writes it
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"Metadata larger than {METADATA_MAX_BYTES} bytes")
    return value


_METADATA_SCHEMA = WithJsonSchema(
    {
        "type": "object",
        "description": f"Any JSON object, nested at most {METADATA_MAX_DEPTH} levels, "
        f"of at most {METADATA_MAX_BYTES} bytes",
    }
)
Metadata = Annotated[dict[str, Any], BeforeValidator(_metadata_object), _METADATA_SCHEMA]


class ResourceCreate(BaseModel):
    """Create or replace (PUT): fields left out take their defaults."""

    name: ResourceName
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)


def _not_null(field: str) -> BeforeValidator:
    """For fields that may be left out but not sent as null."""

    def refuse_null(value: object) -> object:
        if value is None:
            raise ValueError(f"{field} cannot be null")
        return value

    return BeforeValidator(refuse_null)


def _no_null_defaults(*fields: str) -> ConfigDict:
    """Fields that may be left out but not null get no `default: null` in the document."""

    def drop_defaults(schema: dict[str, Any]) -> None:
        for field in fields:
            schema["properties"][field].pop("default", None)

    return ConfigDict(json_schema_extra=drop_defaults)


class ResourcePatch(BaseModel):
    """PATCH: only the fields given change; `description: null` clears it."""

    model_config = _no_null_defaults("name", "metadata")

    # Left out means unchanged (a default is not validated); null is refused by each field's
    # first validator, and the document offers no null (nor a `default: null`).
    name: Annotated[ResourceName | None, _not_null("Name"), WithJsonSchema(_NAME_SCHEMA)] = None
    description: Description | None = None
    metadata: Annotated[
        dict[str, Any] | None, BeforeValidator(_metadata_object), _METADATA_SCHEMA
    ] = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class ResourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    owner_id: int
    version: int = Field(description="1 when created, one more with each change; the ETag's")
    created_at: datetime
    updated_at: datetime


# Straight from rows to JSON (pydantic's serializer, reading attributes), many at once.
RESOURCE = TypeAdapter(ResourceOut)
RESOURCE_LIST = TypeAdapter(list[ResourceOut])
# A time as every answer writes it.
API_TIME = TypeAdapter(datetime)


USERNAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"
Username = Annotated[
    SafeStr,
    StringConstraints(min_length=1, max_length=USERNAME_MAX_LENGTH, pattern=USERNAME_PATTERN),
    # Stated again for the document: after a validator pydantic leaves the pattern out of it.
    Field(json_schema_extra={"pattern": USERNAME_PATTERN}),
]
Password = Annotated[
    StorableStr, Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)
]


def _any_case(word: str) -> str:
    """`word` as a pattern of any letter case (ECMAScript patterns have no inline flags)."""
    return "".join(f"[{letter}{letter.upper()}]" for letter in word)


# Addresses at special-use domains (RFC 6761 and kin) can receive no mail, so email-validator
# refuses them; the document says so.
_AT_SPECIAL_USE_DOMAIN = rf"[@.]({'|'.join(map(_any_case, SPECIAL_USE_DOMAIN_NAMES))})$"
Email = Annotated[
    EmailStr,
    BeforeValidator(_checked_text),
    AfterValidator(str.lower),
    Field(
        description="An address mail can reach: none at a special-use domain (`.test`, …)",
        json_schema_extra={"not": {"pattern": _AT_SPECIAL_USE_DOMAIN}},
    ),
]


class UserCreate(BaseModel):
    # Lower-cased whole: mail systems treat addresses case-insensitively, so must uniqueness.
    email: Email
    username: Username
    password: Password


class ProfileChange(BaseModel):
    """PATCH /users/me: the fields given change (other fields are ignored)."""

    model_config = _no_null_defaults("email", "username")

    email: Annotated[
        Email | None, _not_null("Email"), WithJsonSchema(TypeAdapter(Email).json_schema())
    ] = None
    username: Annotated[
        Username | None,
        _not_null("Username"),
        WithJsonSchema(TypeAdapter(Username).json_schema()),
    ] = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class PasswordChange(BaseModel):
    # No longer than any password can be; what it may hold is the password check's business.
    current_password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)]
    new_password: Password


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    username: str
    is_active: bool
    is_admin: bool
    created_at: datetime


class UserStatus(BaseModel):
    """What an admin may set on another account."""

    is_active: bool


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105  (a scheme name, not a secret)
    expires_in: int = Field(description="seconds the access token lives")
    refresh_token: str = Field(description="for POST /auth/refresh: new tokens, once")


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=200)]


class AccountSummary(BaseModel):
    user_id: int
    resource_count: int
    live_subscribers: int
