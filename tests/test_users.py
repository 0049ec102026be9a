from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from pytest_fastapi_db.identity import TokenFactory
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import auth
from app.auth import create_access_token
from app.models import User
from app.settings import get_settings
from tests.conftest import PASSWORD, UserFactory, raw_json
from tests.problems import assert_problem

NEW_USER = {"email": "New.Person@Example.com", "username": "newbie", "password": PASSWORD}


def test_register_returns_the_user_without_secrets(client: TestClient, db_session: Session) -> None:
    response = client.post("/api/v1/users", json=NEW_USER)

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "new.person@example.com"
    assert body["username"] == "newbie"
    assert body["is_active"] is True
    assert not {"password", "hashed_password"} & body.keys()
    stored = db_session.scalar(select(User).where(User.id == body["id"]))
    assert stored is not None
    assert stored.hashed_password != PASSWORD
    assert auth.verify_password(PASSWORD, stored.hashed_password)


@pytest.mark.parametrize(
    ("change", "taken"),
    [
        ({"username": "someone-else"}, "email"),
        ({"email": "other@example.com"}, "username"),
        ({}, "email and username"),
    ],
)
def test_register_refuses_a_taken_email_or_username(
    client: TestClient, change: dict[str, str], taken: str
) -> None:
    assert client.post("/api/v1/users", json=NEW_USER).status_code == 201

    response = client.post("/api/v1/users", json={**NEW_USER, **change})

    assert response.status_code == 409
    assert response.json()["detail"] == f"A user with this {taken} already exists"


def test_email_uniqueness_ignores_case(client: TestClient) -> None:
    assert client.post("/api/v1/users", json=NEW_USER).status_code == 201
    shouting = {**NEW_USER, "email": NEW_USER["email"].upper(), "username": "loud"}
    assert client.post("/api/v1/users", json=shouting).status_code == 409


@pytest.mark.parametrize(
    "change",
    [
        {"email": "not-an-email"},
        {"email": "nul\x00@example.com"},
        {"username": ""},
        {"username": "u" * 51},
        {"username": "has space"},
        {"username": "\ud800"},
        {"password": "p" * 14},
        {"password": "p" * 129},
        {"password": "fifteen chars \x00!"},
        {"password": "fifteen chars \ud800!"},
    ],
)
def test_register_validates_input(client: TestClient, change: dict[str, str]) -> None:
    response = client.post("/api/v1/users", **raw_json({**NEW_USER, **change}))
    assert response.status_code == 422
    assert response.json()["detail"]


def test_password_limits_are_inclusive(client: TestClient) -> None:
    shortest = {**NEW_USER, "password": "p" * 15}
    longest = {"email": "b@example.com", "username": "b", "password": "p" * 128}
    assert client.post("/api/v1/users", json=shortest).status_code == 201
    assert client.post("/api/v1/users", json=longest).status_code == 201


@pytest.mark.parametrize("login", ["owner", "owner@example.com", "OWNER@example.com"])
def test_login_by_username_or_email(client: TestClient, user: User, login: str) -> None:
    response = client.post("/api/v1/auth/token", data={"username": login, "password": PASSWORD})

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == get_settings().access_token_expire_minutes * 60
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["id"] == user.id


def test_wrong_password_and_unknown_user_look_the_same(
    client: TestClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    real_verify = auth._password_hash().verify

    def counting_verify(password: str, hashed: str) -> bool:
        verified.append(hashed)
        return real_verify(password, hashed)

    monkeypatch.setattr(auth._password_hash(), "verify", counting_verify)

    wrong = client.post("/api/v1/auth/token", data={"username": "owner", "password": "x" * 20})
    unknown = client.post("/api/v1/auth/token", data={"username": "ghost", "password": PASSWORD})

    assert wrong.status_code == unknown.status_code == 401
    for answer in (wrong, unknown):
        assert_problem(answer, 401, "Incorrect username or password")
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"
    # Both paths ran one real Argon2 verification, so neither answers faster.
    assert len(verified) == 2
    assert all(hashed.startswith("$argon2id$") for hashed in verified)


@pytest.mark.parametrize(
    "form",
    [
        b"username=%00&password=0",
        b"username=owner&password=%ED%A0%80xxxxxxxxxxxxxxx",  # a lone surrogate, as UTF-8 bytes
        b"username=own%00er&password=correct+horse+battery+staple",
    ],
)
def test_unstorable_credentials_are_just_wrong_credentials(
    client: TestClient, user: User, form: bytes
) -> None:
    """Found by the schemathesis run on PostgreSQL: a NUL in the login form was a 500."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = client.post("/api/v1/auth/token", content=form, headers=headers)
    assert response.status_code in (401, 422)
    assert response.json()["detail"]


def test_a_token_naming_an_unstorable_subject_is_refused(client: TestClient) -> None:
    token = create_access_token(data={"sub": "nul\x00@example.com"})
    response = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_inactive_user_and_passwordless_user_cannot_log_in(
    client: TestClient, make_user: UserFactory
) -> None:
    make_user(username="sleeper", is_active=False)
    make_user(username="nopass", password=None)
    for login in ("sleeper", "nopass"):
        response = client.post("/api/v1/auth/token", data={"username": login, "password": PASSWORD})
        assert response.status_code == 401


def test_login_requires_the_form_fields(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", data={"username": "owner"})
    assert response.status_code == 422


def test_me_returns_the_caller(client: TestClient, user: User, auth_headers: dict) -> None:
    response = client.get("/api/v1/users/me", headers=auth_headers)
    assert response.status_code == 200
    assert response.json()["username"] == "owner"


CHECKED_CLAIMS = ("exp", "iat", "sub", "jti", "iss", "aud", "sid")


def _token(claims: dict, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or get_settings().signing_key, algorithm=algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _unsigned(claims: dict) -> str:
    return jwt.encode(claims, None, algorithm="none")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer TAMPERED",
        "Bearer EXPIRED",
        "Bearer ALG_NONE",
        "Bearer WRONG_KEY",
        "Bearer UNKNOWN_USER",
        "Bearer WRONG_ISSUER",
        "Bearer WRONG_AUDIENCE",
        "Bearer BEFORE_THE_ACCOUNT",
        *(
            f"Bearer NO_{claim.upper()}"
            for claim in ("exp", "iat", "sub", "jti", "iss", "aud", "sid")
        ),
    ],
)
def test_me_refuses_bad_credentials(
    client: TestClient, user: User, authorization: str | None
) -> None:
    valid = create_access_token(data={"sub": user.email})
    header, payload, signature = valid.split(".")
    # Each bad token differs from a good one in one way only.
    claims = jwt.decode(valid, options={"verify_signature": False})
    assert client.get("/api/v1/users/me", headers=bearer(_token(claims))).status_code == 200
    before = user.tokens_valid_after.timestamp() - 0.001
    tokens = {
        "TAMPERED": f"{header}.{payload}.{signature[:-4]}AAAA",
        "EXPIRED": create_access_token(data={"sub": user.email}, expires_delta=timedelta(-1)),
        "ALG_NONE": _unsigned(claims),
        "WRONG_KEY": _token(claims, key="k" * 48),
        "UNKNOWN_USER": _token({**claims, "sub": "ghost@example.com"}),
        "WRONG_ISSUER": _token({**claims, "iss": "another-service"}),
        "WRONG_AUDIENCE": _token({**claims, "aud": "another-service"}),
        "BEFORE_THE_ACCOUNT": _token({**claims, "iat": before}),
        **{
            f"NO_{claim.upper()}": _token({k: v for k, v in claims.items() if k != claim})
            for claim in CHECKED_CLAIMS
        },
    }
    headers = {}
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        headers["Authorization"] = f"{scheme} {tokens.get(token, token)}".strip()

    response = client.get("/api/v1/users/me", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"]


def test_me_refuses_inactive_and_deleted_users(
    client: TestClient, make_user: UserFactory, db_session: Session, tokens: TokenFactory
) -> None:
    inactive = make_user(username="inactive")
    deleted = make_user(username="deleted")
    inactive_headers, deleted_headers = tokens.headers(inactive), tokens.headers(deleted)
    inactive.is_active = False
    db_session.delete(deleted)
    db_session.commit()

    for headers in (inactive_headers, deleted_headers):
        response = client.get("/api/v1/users/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


def test_tokens_carry_every_claim_that_is_checked(user: User) -> None:
    token = create_access_token(data={"sub": user.email}, expires_delta=timedelta(minutes=5))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == user.email
    assert 299 < claims["exp"] - claims["iat"] <= 300  # `exp` in whole seconds, `iat` not
    assert claims["iss"] == claims["aud"] == "resource-api"
    assert len(claims["jti"]) == len(claims["sid"]) == 32
    again = jwt.decode(
        create_access_token(data={"sub": user.email}), options={"verify_signature": False}
    )
    assert again["jti"] != claims["jti"]


class Decodes:
    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Decodes:
    seen = Decodes()
    decode = jwt.decode

    def counted(*args: Any, **kwargs: Any) -> Any:
        seen.count += 1
        return decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted)
    auth._verified.cache_clear()
    return seen


def test_a_token_is_verified_once_and_its_expiry_checked_every_time(
    user: User, decodes: Decodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = create_access_token(data={"sub": user.email}, expires_delta=timedelta(minutes=1))
    first = auth.read_access_token(token)
    assert auth.read_access_token(token) == first
    assert decodes.count == 1
    expiry = first.expires_at.timestamp()
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: expiry - 0.5))
    assert auth.read_access_token(token) == first
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: expiry))
    with pytest.raises(auth.InvalidToken):
        auth.read_access_token(token)
    assert decodes.count == 1


def test_a_bad_token_is_checked_in_full_every_time(user: User, decodes: Decodes) -> None:
    valid = create_access_token(data={"sub": user.email})
    claims = jwt.decode(valid, options={"verify_signature": False})
    decodes.count = 0
    for bad in (_token(claims, key="k" * 48), _token({**claims, "aud": "another-service"})):
        for _ in range(2):
            with pytest.raises(auth.InvalidToken):
                auth.read_access_token(bad)
    assert decodes.count == 4


def test_a_remembered_token_is_refused_once_the_settings_change(
    user: User, decodes: Decodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = create_access_token(data={"sub": user.email})
    auth.read_access_token(token)
    monkeypatch.setattr(get_settings(), "token_audience", "another-service")
    with pytest.raises(auth.InvalidToken):
        auth.read_access_token(token)
