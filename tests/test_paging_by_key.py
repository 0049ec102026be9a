"""The list paged by key: opaque cursors in `Link: rel="next"`, no count unless asked, sorts
and filters (an owner, the caller's own, a name search); paging by position (`skip`, the
seed's) stays as it was."""

import base64
import json
import re
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.models import Resource, User
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


# Lowercase ASCII letters: the same order in every collation; two names alike, so that the
# id breaks the tie.
NAMES = ["delta", "alpha", "echo", "bravo", "alpha", "charlie", "foxtrot"]


def _sorted_ids(resources: list[Resource], sort: str) -> list[int]:
    key = sort.removeprefix("-")
    ordered = sorted(resources, key=lambda r: (getattr(r, key), r.id))
    return [r.id for r in (ordered[::-1] if sort.startswith("-") else ordered)]


@pytest.mark.parametrize("sort", ["id", "-id", "name", "-name", "created_at", "-created_at"])
def test_each_sort_walks_every_resource_once_in_its_order(
    client: TestClient, db_session: Session, user: User, sort: str
) -> None:
    made = [Resource(name=name, owner_id=user.id) for name in NAMES]
    db_session.add_all(made)
    db_session.commit()
    expected = _sorted_ids(made, sort)

    ids, pages = walk(client, f"{URL}?limit=2&count=false&sort={sort}")
    by_position = client.get(f"{URL}?skip=0&limit=100&sort={sort}").json()

    assert ids == expected
    assert [item["id"] for item in by_position] == expected
    assert all(f"sort={sort}" in page["first"] for page in pages)  # the sort carries on


def test_a_cursor_belongs_to_its_sort(client: TestClient, db_session: Session, user: User) -> None:
    make_resources(db_session, user, 4)
    by_name = links(client.get(f"{URL}?limit=2&count=false&sort=name"))["next"]
    cursor = by_name.split("cursor=")[1]

    assert client.get(f"{URL}?cursor={cursor}&sort=name").status_code == 200
    for other in ("id", "-name", "created_at"):
        body = assert_problem(client.get(f"{URL}?cursor={cursor}&sort={other}"), 422)
        assert body["errors"][0]["loc"] == ["query", "cursor"]


def _cursor(letter: str, place: object) -> str:
    return letter + base64.urlsafe_b64encode(json.dumps(place).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        *(
            ("id", cursor)  # not the shape of any cursor, or of the id order's
            for cursor in ("garbage!", "%00", "", "i", "x12", "i-1", "iAB", "i\u0661\u0662")
        ),
        ("id", "i" + "z" * 13),
        ("id", "i 1"),
        ("name", "n!!"),
        ("name", "nnot-base64-json"),
        ("name", _cursor("n", "just a string")),
        ("name", _cursor("n", ["a", "b"])),
        ("name", _cursor("n", [1, 2])),
        ("name", _cursor("n", ["a", True])),
        ("name", _cursor("n", ["nul\u0000", 1])),
        ("name", _cursor("n", ["a", 1, 2])),
        ("created_at", _cursor("c", ["not a time", 1])),
        ("created_at", _cursor("c", ["2026-01-01T00:00:00", 1])),  # no zone
        ("-created_at", _cursor("d", [None, 1])),
    ],
)
def test_a_cursor_no_list_gave_is_a_422(client: TestClient, sort: str, cursor: str) -> None:
    body = assert_problem(client.get(f"{URL}?cursor={cursor}&sort={sort}"), 422)
    assert body["errors"][0]["loc"] == ["query", "cursor"]


def test_a_forged_cursor_with_any_id_is_a_place(
    client: TestClient, db_session: Session, user: User
) -> None:
    """Ids past the column's range are read as its ends, never sent to the database."""
    make_resources(db_session, user, 3)
    past = client.get(f"{URL}?sort=name&cursor={_cursor('n', ['Resource 2', 10**30])}")
    before = client.get(f"{URL}?sort=-name&cursor={_cursor('o', ['Resource 0', -(10**30)])}")
    assert past.json() == []
    assert before.json() == []


def test_the_name_filter_finds_text_in_names_ignoring_case(
    client: TestClient, db_session: Session, user: User
) -> None:
    names = ["50% off", "5000 OFF", "a_b", "axb", "Notes", "1/2", "1//2"]
    made = {name: Resource(name=name, owner_id=user.id) for name in names}
    db_session.add_all(made.values())
    db_session.commit()

    def found(text: str, extra: str = "") -> list[str]:
        response = client.get(f"{URL}?{urlencode({'name': text})}{extra}")
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()]

    assert found("off") == ["50% off", "5000 OFF"]
    assert found("%") == ["50% off"]  # a wildcard is a character like any other
    assert found("_") == ["a_b"]
    assert found("1/2") == ["1/2"]  # and so is the character that escapes them
    assert found("/") == ["1/2", "1//2"]
    assert found("NOTE") == ["Notes"]
    assert found("nothing") == []
    walked, _pages = walk(client, f"{URL}?name=off&limit=1&count=false")
    assert walked == [made["50% off"].id, made["5000 OFF"].id]
    counted = client.get(f"{URL}?name=off")
    assert counted.headers["x-total-count"] == "2"


@pytest.mark.parametrize("text", ["", "a\u0000b", "x" * 256])
def test_a_name_filter_that_no_name_could_hold_is_a_422(client: TestClient, text: str) -> None:
    body = assert_problem(client.get(f"{URL}?{urlencode({'name': text})}"), 422)
    assert body["errors"][0]["loc"] == ["query", "name"]


def test_mine_is_the_callers_own_resources(
    client: TestClient,
    db_session: Session,
    user: User,
    other_user: User,
    auth_headers: dict[str, str],
) -> None:
    own = [r.id for r in make_resources(db_session, user, 2)]
    make_resources(db_session, other_user, 3)

    response = client.get(f"{URL}?mine=true", headers=auth_headers)

    assert [item["id"] for item in response.json()] == own
    assert response.headers["x-total-count"] == "2"
    assert_problem(client.get(f"{URL}?mine=true"), 401)
    assert_problem(client.get(f"{URL}?mine=true", headers={"Authorization": "Bearer x"}), 401)
    # Filters narrow together: mine and my own id are mine; mine and another's are none.
    same = client.get(f"{URL}?mine=true&owner_id={user.id}", headers=auth_headers)
    assert [item["id"] for item in same.json()] == own
    other = client.get(f"{URL}?mine=true&owner_id={other_user.id}", headers=auth_headers)
    assert other.status_code == 200
    assert (other.json(), other.headers["x-total-count"]) == ([], "0")
    assert len(client.get(URL).json()) == 5  # without it, everyone's, as before
