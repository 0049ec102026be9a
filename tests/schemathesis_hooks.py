"""Schemathesis hooks for the contract run (tests/test_contract.py, via schemathesis.toml)."""

import re
import uuid
from typing import Any

import schemathesis

WELL_FORMED_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@schemathesis.hook
def map_case(_context: Any, case: Any) -> Any:
    """A well-formed Idempotency-Key names one request: the same key with another body is
    refused (422) by design, and keys drawn at random collide. So each case sends a key of its
    own; reuse and replay are tests/test_idempotency.py's. Malformed keys are sent as drawn."""
    for name, value in (case.headers or {}).items():
        if name.lower() == "idempotency-key" and WELL_FORMED_KEY.fullmatch(str(value)):
            case.headers[name] = uuid.uuid4().hex
    return case
