"""The list paged by key: opaque cursors in `Link: rel="next"`, no count unless asked, an
owner filter; paging by position (`skip`, the seed's) stays as it was."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.models import User
from tests.conftest import UserFactory
from tests.problems import assert_problem
from tests.test_resources import URL, make_resources

LINK = re.compile(r'<([^>]*)>; rel="(\w+)"')


def links(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {rel: url for url, rel in LINK.findall(response.headers["link"])}


def walk(client: TestClient, first: str) -> tuple[list[int], list[dict[str, str]]]:
    """Every id from `first` on, following `next`; and each page's links."""
    ids: list[int] = []
    seen_links = []
    url: str | None = first
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.text
        ids += [item["id"] for item in response.json()]
        seen_links.append(links(response))
        url = seen_links[-1].get("next")
    return ids, seen_links


def test_a_walk_by_cursor_gets_every_resource_once_in_order(
    client: TestClient, db_session: Session, user: User
) -> None:
    made = [resource.id for resource in make_resources(db_session, user, 25)]

    first = client.get(f"{URL}?limit=10&count=false")
    assert "x-total-count" not in first.headers  # nothing counted
    ids, pages = walk(client, f"{URL}?limit=10&count=false")

    assert ids == made
    assert len(pages) == 3
    assert all("last" not in page and "prev" not in page for page in pages)
    assert pages[0]["first"] == f"{URL}?limit=10&count=false"
    assert "cursor=" in pages[0]["next"]


def test_a_cursor_holds_its_place_when_earlier_rows_go(
    client: TestClient, db_session: Session, user: User
) -> None:
    """Unlike an offset, which would skip a row when one before it is deleted."""
    made = make_resources(db_session, user, 20)
    next_page = links(client.get(f"{URL}?limit=10&count=false"))["next"]
    db_session.delete(made[0])
    db_session.commit()

    assert [item["id"] for item in client.get(next_page).json()] == [r.id for r in made[10:]]


def test_a_walk_can_be_counted_on_request(
    client: TestClient, db_session: Session, user: User
) -> None:
    make_resources(db_session, user, 12)
    next_page = links(client.get(f"{URL}?limit=5&count=false"))["next"]
    counted = client.get(f"{next_page.replace('count=false', 'count=true')}")
    assert counted.headers["x-total-count"] == "12"
    assert len(counted.json()) == 5


def test_paging_by_position_is_unchanged(
    client: TestClient, db_session: Session, user: User
) -> None:
    make_resources(db_session, user, 25)
    response = client.get(f"{URL}?skip=10&limit=10")
    assert response.headers["x-total-count"] == "25"
    assert set(links(response)) == {"first", "prev", "next", "last"}
    assert "cursor" not in response.headers["link"]


def test_the_owner_filter_in_both_ways_of_paging(
    client: TestClient, db_session: Session, user: User, make_user: UserFactory
) -> None:
    other = make_user(username="other", email="other@example.com")
    mine = [r.id for r in make_resources(db_session, user, 3)]
    theirs = [r.id for r in make_resources(db_session, other, 4)]
    make_resources(db_session, user, 2)

    by_position = client.get(f"{URL}?owner_id={other.id}&skip=0&limit=10")
    assert [item["id"] for item in by_position.json()] == theirs
    assert by_position.headers["x-total-count"] == "4"
    ids, pages = walk(client, f"{URL}?owner_id={other.id}&limit=3&count=false")
    assert ids == theirs
    assert f"owner_id={other.id}" in pages[0]["next"]  # the filter carries on
    assert client.get(f"{URL}?owner_id={user.id}&limit=3").json()[0]["id"] == mine[0]
    assert client.get(f"{URL}?owner_id=2147483647").json() == []


def test_skip_after_a_cursor_passes_over_more(
    client: TestClient, db_session: Session, user: User
) -> None:
    made = [r.id for r in make_resources(db_session, user, 6)]
    cursor = links(client.get(f"{URL}?limit=2&count=false"))["next"].split("cursor=")[1]
    response = client.get(f"{URL}?cursor={cursor}&skip=1&limit=2")
    assert [item["id"] for item in response.json()] == made[3:5]
    assert "skip" not in response.headers["link"]  # the next cursor names the last shown


@pytest.mark.parametrize(
    "cursor",
    ["garbage!", "%00", "", "i", "x12", "i-1", "iAB", "i\u0661\u0662", "i" + "z" * 13, "i 1"],
)
def test_a_cursor_of_another_shape_is_a_422(client: TestClient, cursor: str) -> None:
    body = assert_problem(client.get(f"{URL}?cursor={cursor}"), 422)
    assert body["errors"][0]["loc"] == ["query", "cursor"]


def test_a_cursor_past_every_id_is_an_empty_page(
    client: TestClient, db_session: Session, user: User
) -> None:
    make_resources(db_session, user, 3)
    for cursor in ("izzzzzzzzzzzz", "i0"):
        response = client.get(f"{URL}?cursor={cursor}")
        assert response.status_code == 200
    assert client.get(f"{URL}?cursor=izzzzzzzzzzzz").json() == []
    assert len(client.get(f"{URL}?cursor=i0").json()) == 3  # before the first id: all


@pytest.mark.parametrize("owner", ["0", "-1", "2147483648", "me"])
def test_an_owner_that_cannot_exist_is_a_422(client: TestClient, owner: str) -> None:
    body = assert_problem(client.get(f"{URL}?owner_id={owner}"), 422)
    assert body["errors"][0]["loc"] == ["query", "owner_id"]


def test_a_page_by_key_is_one_query(
    client: TestClient, db_session: Session, user: User, assert_num_queries
) -> None:
    make_resources(db_session, user, 30)
    next_page = links(client.get(f"{URL}?limit=10&count=false"))["next"]
    with assert_num_queries(1):  # the page (and one row more, to know whether more follow)
        assert len(client.get(next_page).json()) == 10
