"""Tokens for tests, minted by the app's own token function, and their broken variants."""

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

TokenFunction = Callable[..., str]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenFactory:
    def __init__(self, create: TokenFunction, subject_attribute: str) -> None:
        self._create = create
        self._subject_attribute = subject_attribute

    def _subject(self, user: Any) -> str:
        return str(getattr(user, self._subject_attribute))

    def valid(self, user: Any) -> str:
        return self._create(data={"sub": self._subject(user)})

    def expired(self, user: Any) -> str:
        return self._create(data={"sub": self._subject(user)}, expires_delta=timedelta(minutes=-5))

    def tampered(self, user: Any) -> str:
        """The claims changed after signing (the subject swapped), the signature kept."""
        header, payload, signature = self.valid(user).split(".")
        claims = json.loads(_unb64(payload))
        claims["sub"] = "someone-else-" + claims["sub"]
        return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"

    def unsigned(self, user: Any) -> str:
        """The same claims with `alg: none` and no signature."""
        _, payload, _ = self.valid(user).split(".")
        header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{payload}."

    def headers(self, user: Any, kind: str = "valid") -> dict[str, str]:
        """`Authorization` headers with a token of `kind`: valid, expired, tampered, unsigned."""
        token = getattr(self, kind)(user)
        return {"Authorization": f"Bearer {token}"}
