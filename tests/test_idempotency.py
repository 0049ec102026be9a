"""Idempotency keys on the creating routes: a retry with the same key and body gets the first
answer again and writes nothing; the same key with another body is a 422; keys are the
caller's own, and expire. Over real sockets: a bulk create whose answer was lost is retried
safely, and duplicates sent at once never both write."""

import asyncio
import json
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.database import utcnow
from app.models import IdempotencyRecord, Resource
from app.services.idempotency import KEY_REUSED
from tests.problems import assert_problem

URL = "/api/v1/resources"
BULK = f"{URL}/bulk"


def stored(db_session: Session) -> int:
    return db_session.scalar(select(func.count()).select_from(Resource)) or 0


def keyed(headers: dict, key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


@pytest.mark.parametrize(
    ("url", "body"),
    [(URL, {"name": "Lamp"}), (BULK, [{"name": "One"}, {"name": "Two"}])],
)
def test_a_retry_gets_the_first_answer_and_writes_nothing(
    client: TestClient, auth_headers: dict, db_session: Session, url: str, body: object
) -> None:
    first = client.post(url, json=body, headers=keyed(auth_headers, "k-1"))
    retry = client.post(url, json=body, headers=keyed(auth_headers, "k-1"))

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    for header in ("location", "etag"):
        assert retry.headers.get(header) == first.headers.get(header)
    assert stored(db_session) == (1 if url == URL else 2)


def test_the_body_is_compared_as_data(
    client: TestClient, auth_headers: dict, db_session: Session
) -> None:
    headers = {**keyed(auth_headers, "k-2"), "Content-Type": "application/json"}
    client.post(URL, content=b'{"name": "Lamp", "metadata": {"a": 1, "b": 2}}', headers=headers)
    retry = client.post(URL, content=b'{"metadata":{"b":2,"a":1},"name":"Lamp"}', headers=headers)
    assert retry.headers["idempotent-replayed"] == "true"
    assert stored(db_session) == 1


def test_the_same_key_with_another_body_is_a_422(
    client: TestClient, auth_headers: dict, db_session: Session
) -> None:
    client.post(URL, json={"name": "Lamp"}, headers=keyed(auth_headers, "k-3"))
    other = client.post(URL, json={"name": "Chair"}, headers=keyed(auth_headers, "k-3"))
    reused = {"loc": ["header", "Idempotency-Key"], "msg": KEY_REUSED, "type": "value_error"}
    assert assert_problem(other, 422, f"header.Idempotency-Key: {KEY_REUSED}")["errors"] == [reused]
    elsewhere = client.post(BULK, json=[{"name": "Lamp"}], headers=keyed(auth_headers, "k-3"))
    assert assert_problem(elsewhere, 422)["errors"] == [reused]  # another route, another request
    assert stored(db_session) == 1


@pytest.mark.parametrize("body", [b"", b"not json", b"[1"])
def test_a_key_with_a_body_that_is_no_json_is_still_a_422(
    client: TestClient, auth_headers: dict, body: bytes
) -> None:
    headers = {**keyed(auth_headers, "k-6"), "Content-Type": "application/json"}
    assert client.post(URL, content=body, headers=headers).status_code == 422


def test_keys_are_the_callers_own(
    client: TestClient, auth_headers: dict, other_headers: dict, db_session: Session
) -> None:
    mine = client.post(URL, json={"name": "Lamp"}, headers=keyed(auth_headers, "shared"))
    theirs = client.post(URL, json={"name": "Lamp"}, headers=keyed(other_headers, "shared"))
    assert theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert stored(db_session) == 2


def test_without_a_key_every_request_writes(
    client: TestClient, auth_headers: dict, db_session: Session
) -> None:
    for _ in range(2):
        assert client.post(URL, json={"name": "Lamp"}, headers=auth_headers).status_code == 201
    assert stored(db_session) == 2


def test_a_failed_write_keeps_no_answer(
    client: TestClient, auth_headers: dict, db_session: Session
) -> None:
    bad = client.post(URL, json={"name": ""}, headers=keyed(auth_headers, "k-4"))
    assert bad.status_code == 422
    good = client.post(URL, json={"name": "Lamp"}, headers=keyed(auth_headers, "k-4"))
    assert good.status_code == 201
    assert "idempotent-replayed" not in good.headers


def test_an_expired_key_writes_again(
    client: TestClient, auth_headers: dict, db_session: Session
) -> None:
    client.post(URL, json={"name": "Lamp"}, headers=keyed(auth_headers, "k-5"))
    db_session.execute(update(IdempotencyRecord).values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    again = client.post(URL, json={"name": "Lamp"}, headers=keyed(auth_headers, "k-5"))
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert stored(db_session) == 2


@pytest.mark.parametrize("key", ["", "has space", "k" * 256])
def test_a_malformed_key_is_a_422(client: TestClient, auth_headers: dict, key: str) -> None:
    headers = {**auth_headers, "Idempotency-Key": key}
    response = client.post(URL, json={"name": "Lamp"}, headers=headers)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]


def count_over_http(base: str) -> int:
    return int(httpx.get(f"{base}{URL}?limit=1").headers["x-total-count"])


def test_a_lost_bulk_answer_is_retried_safely(live_writer: tuple[str, dict[str, str]]) -> None:
    base, headers = live_writer
    items = [{"name": f"item {i}"} for i in range(500)]
    body = json.dumps(items).encode()
    address = urlsplit(base)
    request = (
        f"POST {BULK} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: {headers['Authorization']}\r\nIdempotency-Key: lost-answer\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((address.hostname, address.port)) as connection:
        connection.sendall(request)  # and hang up without reading the answer
    for _ in range(3):
        retry = httpx.post(
            f"{base}{BULK}", json=items, headers=keyed(headers, "lost-answer"), timeout=30
        )
        assert retry.status_code == 201
        assert len(retry.json()) == 500
    assert count_over_http(base) == 500


@pytest.mark.asyncio
async def test_duplicates_sent_at_once_never_both_write(
    live_writer: tuple[str, dict[str, str]],
) -> None:
    base, headers = live_writer
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for round_ in range(10):
            answers = await asyncio.gather(
                *(
                    client.post(
                        BULK,
                        json=[{"name": "a"}, {"name": "b"}],
                        headers=keyed(headers, f"race-{round_}"),
                    )
                    for _ in range(4)
                )
            )
            assert {answer.status_code for answer in answers} == {201}, [a.text for a in answers]
            assert len({json.dumps(answer.json()) for answer in answers}) == 1
    assert count_over_http(base) == 20
