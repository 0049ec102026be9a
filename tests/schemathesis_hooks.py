"""Schemathesis hooks for the contract run (tests/test_contract.py, via schemathesis.toml)."""

import re
import uuid
from datetime import UTC, datetime
from typing import Any, get_args

import schemathesis

from app.api.paging import CURSOR_PATTERN, Sort, decode_cursor, encode_cursor
from app.errors import Unprocessable
from app.models import Resource

WELL_FORMED_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@schemathesis.hook
def map_case(_context: Any, case: Any) -> Any:
    """A well-formed Idempotency-Key names one request: the same key with another body is
    refused (422) by design, and keys drawn at random collide. So each case sends a key of its
    own; reuse and replay are tests/test_idempotency.py's. Malformed keys are sent as drawn."""
    for name, value in (case.headers or {}).items():
        if name.lower() == "idempotency-key" and WELL_FORMED_KEY.fullmatch(str(value)):
            case.headers[name] = uuid.uuid4().hex
    query = case.query or {}
    if case.operation.definition.raw.get("operationId") == "resources-list" and "cursor" in query:
        query["cursor"] = _a_cursor_the_list_could_give(query["cursor"], query.get("sort"))
    return case


def _a_cursor_the_list_could_give(cursor: object, sort: object) -> object:
    """A cursor is opaque: the list's own, for its sort, which no schema can say. Strings of its
    shape that no list gave are refused (422), as tests/test_paging_by_key.py checks; here a
    drawn one of that shape becomes a place the list could have given. Others are sent as drawn."""
    if not isinstance(cursor, str) or not re.fullmatch(CURSOR_PATTERN, cursor):
        return cursor
    sort = sort if sort in get_args(Sort) else "id"
    try:
        decode_cursor(cursor, sort)
    except Unprocessable:
        last = Resource(id=len(cursor), name=cursor, created_at=datetime(2026, 1, 1, tzinfo=UTC))
        return encode_cursor(sort, last)
    return cursor
