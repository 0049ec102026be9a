"""Conditional requests (RFC 9110 §13): a resource's ETag, `If-Match` and `If-None-Match`.

A write that names a version (`If-Match`) happens only to that version, so two editors cannot
overwrite each other unawares; a read that names the version it has gets 304 and no body.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import Header, status

from app.errors import PreconditionFailed
from app.models import Resource
from app.services.resources import ShownResource

ANY = "*"
WEAK = "W/"

IfMatch = Annotated[
    str | None,
    Header(description="Change only this version: an ETag of it (or `*`); another gets 412"),
]
IfNoneMatch = Annotated[
    str | None,
    Header(description="ETags the client holds: the current one gets 304 and no body"),
]
ETAG_HEADER: dict[str, Any] = {
    "ETag": {"description": "The resource's version", "schema": {"type": "string"}}
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    status.HTTP_304_NOT_MODIFIED: {
        "description": "Not modified: `If-None-Match` names the current version",
        "headers": ETAG_HEADER,
    }
}


def etag(resource: Resource | ShownResource) -> str:
    """The version, and the creation time: an id used again (SQLite may hand out a deleted
    row's id) never repeats a tag."""
    return _version_tag(resource.version, resource.created_at)


def shown_etag(shown: Mapping[str, Any]) -> str:
    """`etag` of a resource as an answer shows it (JSON-ready)."""
    return _version_tag(shown["version"], datetime.fromisoformat(shown["created_at"]))


def _version_tag(version: int, created_at: datetime) -> str:
    created = int(created_at.timestamp() * 1_000_000)
    return f'"{version}.{created:x}"'


def _tags(header: str) -> list[tuple[bool, str]]:
    """The entity tags of a header, each with whether it is weak."""
    tags = []
    for part in header.split(","):
        tag = part.strip()
        weak = tag.startswith(WEAK)
        tags.append((weak, tag.removeprefix(WEAK)))
    return tags


def _matches(header: str, current: str, *, weak: bool) -> bool:
    if header.strip() == ANY:
        return True
    return any(tag == current and (weak or not is_weak) for is_weak, tag in _tags(header))


def check_write(resource: Resource, if_match: str | None, if_none_match: str | None) -> None:
    """412 when a write's preconditions do not hold for the resource as it is now."""
    current = etag(resource)
    if if_match is not None and not _matches(if_match, current, weak=False):
        raise PreconditionFailed(
            "The resource has changed: If-Match names another version", {"ETag": current}
        )
    if if_none_match is not None and _matches(if_none_match, current, weak=True):
        raise PreconditionFailed(
            "If-None-Match names the resource's current version", {"ETag": current}
        )


def not_modified(current: str, if_none_match: str | None) -> bool:
    """Whether a read's `If-None-Match` names the current version (`current`'s tag): a 304."""
    return if_none_match is not None and _matches(if_none_match, current, weak=True)
