import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from app.auth import create_access_token
from app.models import User
from tests.conftest import UserFactory

URL = "/api/v1/resources"
SUBSCRIBE = {"type": "subscribe", "channel": "updates"}


@pytest.fixture
def subscriber(client: TestClient, auth_headers: dict) -> Iterator[WebSocketTestSession]:
    with client.websocket_connect("/ws/updates", headers=auth_headers) as websocket:
        websocket.send_json(SUBSCRIBE)
        assert websocket.receive_json() == {"type": "subscribed", "channel": "updates"}
        yield websocket


def create(client: TestClient, headers: dict, name: str) -> dict[str, Any]:
    response = client.post(URL, json={"name": name}, headers=headers)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def test_create_update_delete_are_pushed(
    client: TestClient, auth_headers: dict, subscriber: WebSocketTestSession
) -> None:
    created = create(client, auth_headers, "Lamp")
    updated = client.patch(f"{URL}/{created['id']}", json={"name": "Lamp 2"}, headers=auth_headers)
    client.delete(f"{URL}/{created['id']}", headers=auth_headers)

    assert subscriber.receive_json() == {
        "type": "resource.created",
        "channel": "updates",
        "data": created,
    }
    assert subscriber.receive_json() == {
        "type": "resource.updated",
        "channel": "updates",
        "data": updated.json(),
    }
    assert subscriber.receive_json() == {
        "type": "resource.deleted",
        "channel": "updates",
        "data": updated.json(),
    }


def test_bulk_create_pushes_each_resource(
    client: TestClient, auth_headers: dict, subscriber: WebSocketTestSession
) -> None:
    items = [{"name": f"Item {i}"} for i in range(3)]
    created = client.post(f"{URL}/bulk", json=items, headers=auth_headers).json()

    pushed = [subscriber.receive_json() for _ in items]

    assert [event["type"] for event in pushed] == ["resource.created"] * 3
    assert [event["data"] for event in pushed] == created


def test_every_subscriber_hears_other_users_changes(
    client: TestClient, make_user: UserFactory, subscriber: WebSocketTestSession, tokens: Any
) -> None:
    other = make_user(username="writer")
    with client.websocket_connect("/ws/updates", headers=tokens.headers(other)) as second:
        second.send_json(SUBSCRIBE)
        assert second.receive_json()["type"] == "subscribed"

        created = create(client, tokens.headers(other), "From another user")

        assert subscriber.receive_json()["data"] == created
        assert second.receive_json()["data"] == created


def test_a_rolled_back_write_announces_nothing(
    client: TestClient,
    auth_headers: dict,
    db_session: Session,
    subscriber: WebSocketTestSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_commit = db_session.commit
    calls = 0

    def fail_first_commit() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("COMMIT", {}, Exception("connection lost"))
        real_commit()

    monkeypatch.setattr(db_session, "commit", fail_first_commit)

    failed = client.post(URL, json={"name": "Never"}, headers=auth_headers)
    created = create(client, auth_headers, "Later")

    assert failed.status_code == 503
    # The first event to arrive is the committed one: the failed write sent none.
    assert subscriber.receive_json()["data"] == created


def test_a_refused_write_announces_nothing(
    client: TestClient,
    auth_headers: dict,
    other_headers: dict,
    subscriber: WebSocketTestSession,
) -> None:
    theirs = create(client, other_headers, "Theirs")
    assert subscriber.receive_json()["data"] == theirs

    refused = client.put(f"{URL}/{theirs['id']}", json={"name": "Mine"}, headers=auth_headers)
    mine = create(client, auth_headers, "Mine")

    assert refused.status_code == 403
    assert subscriber.receive_json()["data"] == mine


def test_unsubscribe_stops_the_events(
    client: TestClient, auth_headers: dict, subscriber: WebSocketTestSession
) -> None:
    subscriber.send_json({"type": "unsubscribe", "channel": "updates"})
    assert subscriber.receive_json() == {"type": "unsubscribed", "channel": "updates"}

    create(client, auth_headers, "Unheard")
    subscriber.send_json(SUBSCRIBE)
    assert subscriber.receive_json() == {"type": "subscribed", "channel": "updates"}
    heard = create(client, auth_headers, "Heard")

    assert subscriber.receive_json()["data"] == heard


def test_subscribing_twice_delivers_once(
    client: TestClient, auth_headers: dict, subscriber: WebSocketTestSession
) -> None:
    subscriber.send_json(SUBSCRIBE)
    assert subscriber.receive_json()["type"] == "subscribed"
    first = create(client, auth_headers, "One")
    second = create(client, auth_headers, "Two")
    assert subscriber.receive_json()["data"] == first
    assert subscriber.receive_json()["data"] == second


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '"subscribe"',
        '{"type": "dance"}',
        '{"channel": "updates"}',
        '{"type": "subscribe", "channel": "secrets"}',
    ],
)
def test_junk_frames_get_an_error_and_the_socket_stays_open(
    client: TestClient, auth_headers: dict, frame: str
) -> None:
    with client.websocket_connect("/ws/updates", headers=auth_headers) as websocket:
        websocket.send_text(frame)
        error = websocket.receive_json()
        assert error["type"] == "error"
        assert error["detail"]

        websocket.send_json({"type": "ping"})
        assert websocket.receive_json() == {"type": "pong"}


def test_binary_frames_get_an_error(client: TestClient, auth_headers: dict) -> None:
    with client.websocket_connect("/ws/updates", headers=auth_headers) as websocket:
        websocket.send_bytes(b'{"type": "subscribe"}')
        assert websocket.receive_json()["type"] == "error"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": f"Bearer {create_access_token(data={'sub': 'ghost@example.com'})}"},
    ],
)
def test_a_missing_or_bad_token_is_refused_at_the_handshake(
    client: TestClient, user: User, headers: dict
) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws/updates", headers=headers),
    ):
        pass
    assert refused.value.code == 1008


def test_browsers_authenticate_with_the_bearer_subprotocol(
    client: TestClient, user: User, auth_headers: dict
) -> None:
    token = auth_headers["Authorization"].removeprefix("Bearer ")
    with client.websocket_connect("/ws/updates", subprotocols=["bearer", token]) as websocket:
        assert websocket.accepted_subprotocol == "bearer"
        websocket.send_json(SUBSCRIBE)
        assert websocket.receive_json()["type"] == "subscribed"
        created = create(client, auth_headers, "Seen from a browser")
        assert websocket.receive_json()["data"] == created


def test_fan_out_over_real_sockets(live_server: Any, user: User, tokens: Any) -> None:
    """Black-box, through the kit's live server: a real WebSocket hears a real HTTP write."""
    import httpx
    from websockets.sync.client import connect

    headers = tokens.headers(user)
    with connect(f"{live_server.ws_url}/ws/updates", additional_headers=headers) as websocket:
        websocket.send(json.dumps(SUBSCRIBE))
        assert json.loads(websocket.recv(timeout=5))["type"] == "subscribed"

        created = httpx.post(f"{live_server}{URL}", json={"name": "Live"}, headers=headers)

        assert created.status_code == 201
        assert json.loads(websocket.recv(timeout=5)) == {
            "type": "resource.created",
            "channel": "updates",
            "data": created.json(),
        }
