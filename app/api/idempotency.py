"""`Idempotency-Key` on the creating routes: a retry gets the first answer again."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from app.api.deps import CurrentUser, Work
from app.api.openapi import may_answer
from app.models import IDEMPOTENCY_KEY_MAX_LENGTH, IdempotencyRecord
from app.services import idempotency

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


@may_answer(422)
async def idempotent(
    request: Request, user: CurrentUser, uow: Work, key: IdempotencyKey = None
) -> Idempotent:
    if key is None:
        return Idempotent()
    fingerprint = idempotency.fingerprint(request.method, request.url.path, await request.body())
    outcome = await run_in_threadpool(idempotency.reserve, uow, user.id, key, fingerprint)
    if isinstance(outcome, idempotency.Answer):
        return Idempotent(answer=outcome)
    return Idempotent(reserved=outcome)


Idempotency = Annotated[Idempotent, Depends(idempotent)]
