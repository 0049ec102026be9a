"""Tokens end when they should: a login is a session of short access tokens renewed by a
refresh token that is spent on use (a spent one presented again ends the session), logging
out ends it at once, logging out everywhere ends every session and every token issued until
then, and no token outlives its account."""

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.auth import create_access_token
from app.database import utcnow
from app.models import LoginSession, User
from app.services.sessions import BAD_REFRESH
from tests.conftest import PASSWORD, UserFactory
from tests.problems import assert_problem

API = "/api/v1"
ME = f"{API}/users/me"


def log_in(client: TestClient, login: str = "owner", password: str = PASSWORD) -> dict:
    response = client.post(f"{API}/auth/token", data={"username": login, "password": password})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens: dict = response.json()
    return tokens


def bearer(tokens: dict | str) -> dict[str, str]:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}


def renew(client: TestClient, refresh_token: str) -> tuple[int, dict]:
    response = client.post(f"{API}/auth/refresh", json={"refresh_token": refresh_token})
    return response.status_code, response.json()


def works(client: TestClient, tokens: dict | str) -> bool:
    status = client.get(ME, headers=bearer(tokens)).status_code
    assert status in (200, 401)
    return status == 200


def test_a_login_gets_a_short_access_token_and_a_refresh_token(
    client: TestClient, user: User
) -> None:
    tokens = log_in(client)
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    assert tokens["refresh_token"].startswith(tokens["refresh_token"].split(".")[0] + ".")
    assert works(client, tokens)


def test_a_refresh_token_renews_once(client: TestClient, user: User) -> None:
    first = log_in(client)
    status, second = renew(client, first["refresh_token"])
    assert status == 200
    assert second["refresh_token"] != first["refresh_token"]
    assert works(client, second)
    assert works(client, first)  # an access token lives out its (short) life
    status, third = renew(client, second["refresh_token"])
    assert status == 200
    assert works(client, third)


def test_a_spent_refresh_token_presented_again_ends_the_session(
    client: TestClient, user: User
) -> None:
    stolen = log_in(client)
    _, rightful = renew(client, stolen["refresh_token"])  # the rightful client renews first

    response = client.post(f"{API}/auth/refresh", json={"refresh_token": stolen["refresh_token"]})

    assert_problem(response, 401, BAD_REFRESH)
    assert renew(client, rightful["refresh_token"])[0] == 401  # the whole session is over
    assert not works(client, rightful)
    assert not works(client, stolen)
    assert works(client, log_in(client))  # logging in again starts afresh


@pytest.mark.parametrize(
    "refresh_token",
    ["garbage", "", "0" * 32, f"{'0' * 32}.nope", "a.b.c", "ü" * 10, "x" * 201],
)
def test_a_made_up_refresh_token_is_refused(
    client: TestClient, user: User, refresh_token: str
) -> None:
    response = client.post(f"{API}/auth/refresh", json={"refresh_token": refresh_token})
    assert response.status_code in (401, 422)  # 422: not even shaped like one
    assert response.json()["detail"]


def test_a_refresh_token_expires_with_its_session(
    client: TestClient, user: User, db_session: Session
) -> None:
    tokens = log_in(client)
    db_session.execute(update(LoginSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    assert_problem(
        client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        401,
        BAD_REFRESH,
    )


def test_an_inactive_user_cannot_renew(client: TestClient, user: User, db_session: Session) -> None:
    tokens = log_in(client)
    user.is_active = False
    db_session.commit()
    assert renew(client, tokens["refresh_token"])[0] == 401


def test_logging_out_ends_this_session_only(client: TestClient, user: User) -> None:
    here, elsewhere = log_in(client), log_in(client)

    assert client.post(f"{API}/auth/logout", headers=bearer(here)).status_code == 204

    assert not works(client, here)
    assert renew(client, here["refresh_token"])[0] == 401
    assert works(client, elsewhere)
    assert client.post(f"{API}/auth/logout", headers=bearer(here)).status_code == 401


def test_a_token_made_without_a_login_can_be_logged_out(client: TestClient, user: User) -> None:
    token = create_access_token(data={"sub": user.email})  # as the seed's tests make them
    other = create_access_token(data={"sub": user.email})
    assert client.post(f"{API}/auth/logout", headers=bearer(token)).status_code == 204
    assert not works(client, token)
    assert works(client, other)


def test_logging_out_everywhere_ends_every_token(client: TestClient, user: User) -> None:
    sessions = [log_in(client), log_in(client)]
    minted = create_access_token(data={"sub": user.email})

    response = client.post(f"{API}/auth/logout-everywhere", headers=bearer(sessions[0]))

    assert response.status_code == 204
    assert not any(works(client, tokens) for tokens in [*sessions, minted])
    assert all(renew(client, tokens["refresh_token"])[0] == 401 for tokens in sessions)
    assert works(client, log_in(client))


def test_a_deleted_accounts_token_does_not_work_for_a_new_account_with_its_email(
    client: TestClient, make_user: UserFactory, db_session: Session
) -> None:
    first = make_user(username="first", email="reused@example.com")
    old_token = create_access_token(data={"sub": first.email})
    assert works(client, old_token)
    db_session.delete(first)
    db_session.commit()
    make_user(username="second", email="reused@example.com")

    assert not works(client, old_token)
    assert works(client, create_access_token(data={"sub": "reused@example.com"}))


def test_login_sessions_that_expired_are_tidied_at_the_next_login(
    client: TestClient, user: User, db_session: Session
) -> None:
    log_in(client)
    db_session.execute(update(LoginSession).values(expires_at=utcnow() - timedelta(days=1)))
    db_session.commit()
    log_in(client)
    db_session.expire_all()
    assert db_session.query(LoginSession).count() == 1


def _answers(client: TestClient, tokens: dict | str) -> set[int]:
    """What a token gets from each way a caller is found: the ORM user (`/users/me`), the
    caller's row (a write, the list's `mine`, a signed-in check)."""
    headers = bearer(tokens)
    return {
        client.get(ME, headers=headers).status_code,
        client.post(f"{API}/resources", json={"name": "n"}, headers=headers).status_code,
        client.get(f"{API}/resources?mine=true", headers=headers).status_code,
    }


def _deactivate(client: TestClient, user: User, db_session: Session, tokens: dict) -> None:
    user.is_active = False
    db_session.commit()


def _log_out(client: TestClient, user: User, db_session: Session, tokens: dict) -> None:
    assert client.post(f"{API}/auth/logout", headers=bearer(tokens)).status_code == 204


def _log_out_everywhere(client: TestClient, user: User, db_session: Session, tokens: dict) -> None:
    headers = bearer(log_in(client))
    assert client.post(f"{API}/auth/logout-everywhere", headers=headers).status_code == 204


def _delete(client: TestClient, user: User, db_session: Session, tokens: dict) -> None:
    db_session.delete(user)
    db_session.commit()


@pytest.mark.parametrize("end", [_deactivate, _log_out, _log_out_everywhere, _delete])
def test_a_dead_token_is_refused_however_its_caller_is_found(
    client: TestClient, user: User, db_session: Session, end: Any
) -> None:
    tokens = log_in(client)
    assert _answers(client, tokens) == {200, 201}
    end(client, user, db_session, tokens)
    assert _answers(client, tokens) == {401}
    external = client.get(f"{API}/resources/1/external-data", headers=bearer(tokens))
    assert external.status_code == 401  # refused before any call out
