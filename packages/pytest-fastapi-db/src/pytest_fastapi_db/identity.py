"""Tokens for tests, minted by the app's own token function, and their broken variants."""

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

# (user, expires_delta or None) -> the token the app would issue for that user
MintToken = Callable[[Any, timedelta | None], str]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenFactory:
    def __init__(self, mint: MintToken) -> None:
        self._mint = mint

    def valid(self, user: Any) -> str:
        return self._mint(user, None)

    def expired(self, user: Any) -> str:
        return self._mint(user, timedelta(minutes=-5))

    def tampered(self, user: Any) -> str:
        """The claims changed after signing (the subject swapped), the signature kept."""
        header, payload, signature = self.valid(user).split(".")
        claims = json.loads(_unb64(payload))
        claims["sub"] = f"someone-else-{claims.get('sub', '')}"
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
