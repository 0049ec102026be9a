"""Idempotency keys: a write retried with the same key gets the first answer again instead of
being made again (draft-ietf-httpapi-idempotency-key-header).

The key is reserved by inserting its record in the write's own transaction, before the write:
a concurrent duplicate blocks on that row (PostgreSQL; SQLite's writers take turns anyway),
then finds the committed answer and gives it, so two requests with one key never both write.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from app.database import utcnow
from app.errors import Conflict, Unprocessable
from app.models import IdempotencyRecord
from app.repositories import IdempotencyRepository
from app.settings import get_settings
from app.unit_of_work import UnitOfWork

KEY_REUSED = "This Idempotency-Key was used for another request"


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: str
    headers: dict[str, str]


def fingerprint(method: str, path: str, body: bytes) -> str:
    """The request, as far as a key must match it: a JSON body compared as data (other bodies,
    which validation will refuse anyway, as bytes)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        canonical = body
    return hashlib.sha256(f"{method} {path} ".encode() + canonical).hexdigest()


def reserve(uow: UnitOfWork, user_id: int, key: str, request: str) -> IdempotencyRecord | Answer:
    """The first answer when this is a retry of `request` (a fingerprint); otherwise the key,
    now reserved for this request: a record for `remember` to fill in."""
    repository = IdempotencyRepository(uow.session)
    now = utcnow()
    record = repository.get_for_update(user_id, key)
    if record is None or record.expires_at <= now:
        if record is not None:
            uow.session.delete(record)
        repository.delete_expired(user_id, now)  # tidy as we go
        reserved = IdempotencyRecord(
            user_id=user_id,
            key=key,
            fingerprint=request,
            status_code=0,
            body="",
            headers={},
            expires_at=now + timedelta(hours=get_settings().idempotency_key_ttl_hours),
        )
        try:
            with uow.session.begin_nested():
                uow.session.add(reserved)
            return reserved
        except IntegrityError:
            # A duplicate made at the same moment has just committed: its answer is ours.
            record = repository.get_for_update(user_id, key)
            if record is None:
                raise Conflict("A request with this Idempotency-Key was in flight; retry") from None
    if record.fingerprint != request:
        raise Unprocessable(KEY_REUSED, ("header", "Idempotency-Key"))
    return Answer(record.status_code, record.body, dict(record.headers))


def remember(
    record: IdempotencyRecord, status_code: int, body: str, headers: dict[str, str]
) -> None:
    """The answer the write gets (its JSON text), kept (in its transaction) for retries."""
    record.status_code = status_code
    record.body = body
    record.headers = headers
