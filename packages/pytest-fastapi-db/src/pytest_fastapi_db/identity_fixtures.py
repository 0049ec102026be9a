"""Fixtures of identities: users made by the app's own factory, and tokens for them."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from pytest_fastapi_db.config import KitConfig
from pytest_fastapi_db.identity import MintToken, TokenFactory


@pytest.fixture
def make_user(db_session: Session, kit: KitConfig) -> Callable[..., Any]:
    """`make_user(**fields)`: a committed user, made by the app's own factory."""
    factory = kit.load("fastapi_user_factory")

    def make(**fields: Any) -> Any:
        user = factory(db_session, **fields)
        db_session.commit()
        return user

    return make


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user()


@pytest.fixture
def other_user(make_user: Callable[..., Any]) -> Any:
    return make_user()


@pytest.fixture
def mint_token(kit: KitConfig) -> MintToken:
    """`mint_token(user, expires_delta)`: a token as the app issues it. By default the ini's
    `fastapi_token_factory(data={"sub": <user.fastapi_token_subject>}, expires_delta=…)`;
    override this fixture for any other signature or claim (the user's id, say)."""
    create = kit.load("fastapi_token_factory")
    subject = kit.option("fastapi_token_subject")

    def mint(user: Any, expires_delta: timedelta | None = None) -> str:
        data = {"sub": str(getattr(user, subject))}
        token: str = (
            create(data=data)
            if expires_delta is None
            else create(data=data, expires_delta=expires_delta)
        )
        return token

    return mint


@pytest.fixture
def tokens(mint_token: MintToken) -> TokenFactory:
    """Valid, expired, tampered and `alg: none` tokens, minted by `mint_token`."""
    return TokenFactory(mint_token)


@pytest.fixture
def auth_headers(user: Any, tokens: TokenFactory) -> dict[str, str]:
    return tokens.headers(user)


__all__ = ["auth_headers", "make_user", "mint_token", "other_user", "tokens", "user"]
