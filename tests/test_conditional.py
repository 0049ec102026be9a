"""Optimistic concurrency: every resource answer carries its version as an `ETag`; writes that
name a version (`If-Match`) happen only to it (else 412, nothing changed), and a read naming
the current one (`If-None-Match`) gets 304. Without these headers everything is as before."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.models import Resource, User
from tests.problems import assert_problem

URL = "/api/v1/resources"


@pytest.fixture
def resource(db_session: Session, user: User) -> Resource:
    resource = Resource(name="Shared", owner_id=user.id)
    db_session.add(resource)
    db_session.commit()
    return resource


def current_etag(client: TestClient, resource: Resource) -> str:
    response = client.get(f"{URL}/{resource.id}")
    assert response.status_code == 200
    return response.headers["etag"]


def stored_name(db_session: Session, resource: Resource) -> str:
    db_session.expire_all()
    return db_session.get_one(Resource, resource.id).name


def test_each_change_makes_a_new_version_and_tag(
    client: TestClient, resource: Resource, auth_headers: dict
) -> None:
    first = client.get(f"{URL}/{resource.id}")
    assert first.json()["version"] == 1
    assert current_etag(client, resource) == first.headers["etag"]  # stable while unchanged

    changed = client.patch(f"{URL}/{resource.id}", json={"name": "Renamed"}, headers=auth_headers)

    assert changed.json()["version"] == 2
    assert changed.headers["etag"] not in (first.headers["etag"], None)
    assert current_etag(client, resource) == changed.headers["etag"]
    unchanged = client.patch(f"{URL}/{resource.id}", json={}, headers=auth_headers)
    assert unchanged.headers["etag"] == changed.headers["etag"]  # nothing changed, same version


def test_a_created_resource_answers_with_its_tag(client: TestClient, auth_headers: dict) -> None:
    created = client.post(URL, json={"name": "New"}, headers=auth_headers)
    assert created.json()["version"] == 1
    assert client.get(created.headers["location"]).headers["etag"] == created.headers["etag"]


@pytest.mark.parametrize("form", ["{tag}", "W/{tag}", '"other", {tag}', "*"])
def test_a_read_naming_the_current_version_is_304(
    client: TestClient, resource: Resource, form: str
) -> None:
    tag = current_etag(client, resource)
    response = client.get(f"{URL}/{resource.id}", headers={"If-None-Match": form.format(tag=tag)})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == tag


def test_a_read_naming_an_old_version_gets_the_new_one(
    client: TestClient, resource: Resource, auth_headers: dict
) -> None:
    old = current_etag(client, resource)
    client.patch(f"{URL}/{resource.id}", json={"name": "Renamed"}, headers=auth_headers)
    response = client.get(f"{URL}/{resource.id}", headers={"If-None-Match": old})
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [("put", {"name": "Put"}, 200), ("patch", {"name": "Patched"}, 200), ("delete", None, 204)],
)
def test_a_write_naming_the_current_version_goes_through(
    client: TestClient, resource: Resource, auth_headers: dict, method: str, body: dict, status: int
) -> None:
    headers = {**auth_headers, "If-Match": current_etag(client, resource)}
    response = client.request(method, f"{URL}/{resource.id}", json=body, headers=headers)
    assert response.status_code == status
    star = client.patch(f"{URL}/{resource.id}", json={}, headers={**auth_headers, "If-Match": "*"})
    assert star.status_code == (200 if method != "delete" else 404)


@pytest.mark.parametrize(("method", "body"), [("put", {"name": "Put"}), ("patch", {"name": "P"})])
@pytest.mark.parametrize("stale", ['"1.0"', "W/{tag}", "garbage"])
def test_a_write_naming_another_version_is_412_and_changes_nothing(
    client: TestClient,
    resource: Resource,
    auth_headers: dict,
    db_session: Session,
    method: str,
    body: dict,
    stale: str,
) -> None:
    tag = current_etag(client, resource)
    headers = {**auth_headers, "If-Match": stale.format(tag=tag)}  # a weak tag never matches
    response = client.request(method, f"{URL}/{resource.id}", json=body, headers=headers)
    assert_problem(response, 412, "The resource has changed: If-Match names another version")
    assert response.headers["etag"] == tag
    assert stored_name(db_session, resource) == "Shared"
    assert current_etag(client, resource) == tag


def test_a_delete_naming_another_version_is_412_and_deletes_nothing(
    client: TestClient, resource: Resource, auth_headers: dict
) -> None:
    headers = {**auth_headers, "If-Match": '"7.0"'}
    assert_problem(client.delete(f"{URL}/{resource.id}", headers=headers), 412)
    assert client.get(f"{URL}/{resource.id}").status_code == 200


def test_two_editors_cannot_overwrite_each_other_unawares(
    client: TestClient, resource: Resource, auth_headers: dict, db_session: Session
) -> None:
    seen = current_etag(client, resource)  # both editors read the same version
    headers = {**auth_headers, "If-Match": seen}
    first = client.patch(f"{URL}/{resource.id}", json={"name": "First"}, headers=headers)
    second = client.patch(f"{URL}/{resource.id}", json={"name": "Second"}, headers=headers)
    assert first.status_code == 200
    assert_problem(second, 412)
    assert second.headers["etag"] == first.headers["etag"]  # what to read before retrying
    assert stored_name(db_session, resource) == "First"


def test_if_none_match_star_on_a_write_is_412(
    client: TestClient, resource: Resource, auth_headers: dict
) -> None:
    headers = {**auth_headers, "If-None-Match": "*"}  # "only if it does not exist"
    response = client.put(f"{URL}/{resource.id}", json={"name": "X"}, headers=headers)
    assert_problem(response, 412, "If-None-Match names the resource's current version")


def test_ownership_is_checked_before_the_version(
    client: TestClient, resource: Resource, other_headers: dict
) -> None:
    headers = {**other_headers, "If-Match": '"stale"'}
    assert_problem(client.patch(f"{URL}/{resource.id}", json={}, headers=headers), 403)
    assert_problem(client.patch(f"{URL}/999999", json={}, headers=headers), 404)
