"""One's own account (profile, password, deletion) and an admin's say over others'."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.testclient import WebSocketTestSession

from app.models import Resource, User
from app.services.users import ADMINS_ONLY, WRONG_PASSWORD
from tests.conftest import PASSWORD, UserFactory
from tests.problems import assert_problem
from tests.test_sessions import bearer, log_in, works

API = "/api/v1"
ME = f"{API}/users/me"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def admin(make_user: UserFactory) -> User:
    return make_user(username="admin", is_admin=True)


@pytest.fixture
def admin_headers(admin: User, tokens: object) -> dict[str, str]:
    return tokens.headers(admin)  # type: ignore[attr-defined,no-any-return]


class TestProfile:
    def test_change_username_and_email_and_keep_working(
        self, client: TestClient, user: User
    ) -> None:
        tokens = log_in(client)
        change = {"username": "renamed", "email": "New@Example.com", "is_admin": True}

        response = client.patch(ME, json=change, headers=bearer(tokens))

        assert response.status_code == 200
        assert response.json()["username"] == "renamed"
        assert response.json()["email"] == "new@example.com"
        assert response.json()["is_admin"] is False  # not something one grants oneself
        assert works(client, tokens)  # tokens name the account, not its email
        assert works(client, log_in(client, "new@example.com"))

    @pytest.mark.parametrize("field", ["username", "email"])
    def test_what_another_user_has_is_a_409(
        self, client: TestClient, user: User, other_user: User, auth_headers: dict, field: str
    ) -> None:
        response = client.patch(ME, json={field: getattr(other_user, field)}, headers=auth_headers)
        assert_problem(response, 409, f"A user with this {field} already exists")

    def test_keeping_ones_own_values_is_fine(
        self, client: TestClient, user: User, auth_headers: dict
    ) -> None:
        body = {"username": user.username, "email": user.email}
        assert client.patch(ME, json=body, headers=auth_headers).status_code == 200

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"username": None}, "Username cannot be null"),
            ({"email": None}, "Email cannot be null"),
            ({"username": "has space"}, "String should match pattern"),
            ({"email": "nope"}, "not a valid email address"),
        ],
    )
    def test_bad_changes_are_422(
        self, client: TestClient, user: User, auth_headers: dict, body: dict, message: str
    ) -> None:
        response = client.patch(ME, json=body, headers=auth_headers)
        assert message in assert_problem(response, 422)["detail"]

    def test_needs_a_token(self, client: TestClient) -> None:
        assert_problem(client.patch(ME, json={"username": "x"}), 401)


class TestPassword:
    URL = f"{ME}/password"

    def test_a_new_password_ends_every_other_token(
        self, client: TestClient, user: User, auth_headers: dict
    ) -> None:
        elsewhere = log_in(client)
        body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

        response = client.put(self.URL, json=body, headers=bearer(log_in(client)))

        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert works(client, response.json())  # the caller carries on with the new tokens
        assert not works(client, elsewhere)
        assert client.get(ME, headers=auth_headers).status_code == 401
        bad = client.post(f"{API}/auth/token", data={"username": "owner", "password": PASSWORD})
        assert bad.status_code == 401
        assert works(client, log_in(client, password=NEW_PASSWORD))

    def test_a_wrong_current_password_is_403_and_changes_nothing(
        self, client: TestClient, user: User, auth_headers: dict
    ) -> None:
        body = {"current_password": "not the password at all", "new_password": NEW_PASSWORD}
        assert_problem(client.put(self.URL, json=body, headers=auth_headers), 403, WRONG_PASSWORD)
        assert works(client, auth_headers["Authorization"].split()[1])
        assert works(client, log_in(client))

    def test_wrong_current_passwords_lock_the_account_as_failed_logins_do(
        self, client: TestClient, user: User, auth_headers: dict
    ) -> None:
        body = {"current_password": "wrong " * 3, "new_password": NEW_PASSWORD}
        statuses = [client.put(self.URL, json=body, headers=auth_headers).status_code]
        while statuses[-1] == 403 and len(statuses) < 20:
            statuses.append(client.put(self.URL, json=body, headers=auth_headers).status_code)
        assert statuses[0] == 403
        assert statuses[-1] == 429

    @pytest.mark.parametrize("new_password", ["short", "x" * 129])
    def test_the_new_password_follows_the_rules(
        self, client: TestClient, user: User, auth_headers: dict, new_password: str
    ) -> None:
        body = {"current_password": PASSWORD, "new_password": new_password}
        assert_problem(client.put(self.URL, json=body, headers=auth_headers), 422)
        assert works(client, log_in(client))

    def test_needs_a_token(self, client: TestClient) -> None:
        body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        assert_problem(client.put(self.URL, json=body), 401)


@pytest.fixture
def onlooker(client: TestClient, other_headers: dict) -> Iterator[WebSocketTestSession]:
    with client.websocket_connect("/ws/updates", headers=other_headers) as websocket:
        websocket.send_json({"type": "subscribe", "channel": "updates"})
        assert websocket.receive_json()["type"] == "subscribed"
        yield websocket


def resource_count(db_session: Session, owner: User) -> int:
    query = select(func.count()).select_from(Resource).where(Resource.owner_id == owner.id)
    return db_session.scalar(query) or 0


class TestDeletion:
    def test_deleting_ones_account_deletes_what_it_owns_and_says_so(
        self,
        client: TestClient,
        user: User,
        other_user: User,
        auth_headers: dict,
        other_headers: dict,
        onlooker: WebSocketTestSession,
        db_session: Session,
    ) -> None:
        mine = [
            client.post(f"{API}/resources", json={"name": n}, headers=auth_headers).json()
            for n in ("a", "b")
        ]
        theirs = client.post(f"{API}/resources", json={"name": "c"}, headers=other_headers)
        for _ in range(3):
            onlooker.receive_json()  # the three creations

        assert client.delete(ME, headers=auth_headers).status_code == 204

        deleted = [onlooker.receive_json() for _ in mine]
        assert [event["type"] for event in deleted] == ["resource.deleted"] * 2
        assert [event["data"]["id"] for event in deleted] == [r["id"] for r in mine]
        db_session.expire_all()
        assert db_session.get(User, user.id) is None
        assert resource_count(db_session, user) == 0
        assert resource_count(db_session, other_user) == 1
        assert client.get(f"{API}/resources/{theirs.json()['id']}").status_code == 200
        assert client.get(ME, headers=auth_headers).status_code == 401
        bad = client.post(f"{API}/auth/token", data={"username": "owner", "password": PASSWORD})
        assert bad.status_code == 401

    def test_needs_a_token(self, client: TestClient) -> None:
        assert_problem(client.delete(ME), 401)


class TestAdmin:
    def status_url(self, user: User) -> str:
        return f"{API}/users/{user.id}"

    def test_an_admin_deactivates_a_user_whose_tokens_die_at_once(
        self, client: TestClient, user: User, admin_headers: dict
    ) -> None:
        tokens = log_in(client)

        response = client.patch(
            self.status_url(user), json={"is_active": False}, headers=admin_headers
        )

        assert response.status_code == 200
        assert response.json()["is_active"] is False
        assert not works(client, tokens)
        bad = client.post(f"{API}/auth/token", data={"username": "owner", "password": PASSWORD})
        assert bad.status_code == 401
        back = client.patch(self.status_url(user), json={"is_active": True}, headers=admin_headers)
        assert back.status_code == 200
        assert not works(client, tokens)  # reactivation revives no old token
        assert works(client, log_in(client))

    def test_only_an_admin_may(
        self, client: TestClient, user: User, other_user: User, auth_headers: dict
    ) -> None:
        response = client.patch(
            self.status_url(other_user), json={"is_active": False}, headers=auth_headers
        )
        assert_problem(response, 403, ADMINS_ONLY)
        assert works(client, log_in(client, "stranger"))

    def test_a_missing_user_is_404_and_oneself_409(
        self, client: TestClient, admin: User, admin_headers: dict
    ) -> None:
        missing = client.patch(
            f"{API}/users/999999", json={"is_active": False}, headers=admin_headers
        )
        assert_problem(missing, 404, "User not found")
        own = client.patch(self.status_url(admin), json={"is_active": False}, headers=admin_headers)
        assert_problem(own, 409, "Admins cannot change their own status")

    def test_needs_a_token(self, client: TestClient, user: User) -> None:
        assert_problem(client.patch(self.status_url(user), json={"is_active": False}), 401)

    def test_an_admin_deletes_anyones_resource_but_changes_none(
        self, client: TestClient, auth_headers: dict, admin_headers: dict
    ) -> None:
        first = client.post(f"{API}/resources", json={"name": "a"}, headers=auth_headers).json()
        url = f"{API}/resources/{first['id']}"
        assert_problem(client.patch(url, json={"name": "b"}, headers=admin_headers), 403)
        assert_problem(client.put(url, json={"name": "b"}, headers=admin_headers), 403)
        assert client.delete(url, headers=admin_headers).status_code == 204
        assert client.get(url).status_code == 404
