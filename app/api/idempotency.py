"""`Idempotency-Key` on the creating routes: a retry gets the first answer again."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import Response

from app.api.openapi import may_answer
from app.models import IDEMPOTENCY_KEY_MAX_LENGTH, IdempotencyRecord
from app.services import idempotency
from app.services.resources import Caller
from app.unit_of_work import UnitOfWork

REPLAYED = "Idempotent-Replayed"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID, say): a retry with the same key and body gets "
        "the first answer again instead of writing again; with another body, 422",
    ),
]


@dataclass(frozen=True)
class Idempotent:
    """What a creating route does about its request's key."""

    reserved: IdempotencyRecord | None = None
    answer: idempotency.Answer | None = None

    def replay(self) -> Response | None:
        """The first answer, when this request is a retry."""
        if self.answer is None:
            return None
        headers = {**self.answer.headers, REPLAYED: "true"}
        return Response(
            self.answer.body, self.answer.status_code, headers, media_type="application/json"
        )

    def remember(self, answer: Response, *headers: str) -> Response:
        """Keep this answer (its JSON body and the named headers) for retries; hand it back."""
        if self.reserved is not None:
            kept = {name: answer.headers[name] for name in headers if name in answer.headers}
            body = bytes(answer.body).decode()
            idempotency.remember(self.reserved, answer.status_code, body, kept)
        return answer


@dataclass(frozen=True)
class IdempotencyRequest:
    """A creating request's key and what it asks for, read on the event loop; `begin` then
    reserves the key in the write's own transaction."""

    key: str | None = None
    fingerprint: str = ""

    def begin(self, uow: UnitOfWork, user: Caller) -> Idempotent:
        if self.key is None:
            return Idempotent()
        outcome = idempotency.reserve(uow, user.id, self.key, self.fingerprint)
        if isinstance(outcome, idempotency.Answer):
            return Idempotent(answer=outcome)
        return Idempotent(reserved=outcome)


@may_answer(422)
async def idempotency_request(request: Request, key: IdempotencyKey = None) -> IdempotencyRequest:
    if key is None:
        return IdempotencyRequest()
    body = await request.body()
    return IdempotencyRequest(key, idempotency.fingerprint(request.method, request.url.path, body))


Idempotency = Annotated[IdempotencyRequest, Depends(idempotency_request)]
