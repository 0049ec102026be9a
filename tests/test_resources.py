from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Resource, User
from app.repositories import COPY_PAYS_FROM
from tests.conftest import raw_json
from tests.problems import assert_problem

URL = "/api/v1/resources"


def make_resources(db_session: Session, owner: User, count: int) -> list[Resource]:
    resources = [Resource(name=f"Resource {i}", owner_id=owner.id) for i in range(count)]
    db_session.add_all(resources)
    db_session.commit()
    return resources


def stored_count(db_session: Session) -> int:
    return db_session.scalar(select(func.count()).select_from(Resource)) or 0


class TestCreate:
    def test_creates_for_the_caller_with_location(
        self, client: TestClient, user: User, auth_headers: dict, db_session: Session
    ) -> None:
        body = {"name": "Lamp", "description": "Brass", "metadata": {"watts": 40, "tags": ["a"]}}

        response = client.post(URL, json=body, headers=auth_headers)

        assert response.status_code == 201
        created = response.json()
        assert created["name"] == "Lamp"
        assert created["description"] == "Brass"
        assert created["metadata"] == {"watts": 40, "tags": ["a"]}
        assert created["owner_id"] == user.id
        assert created["created_at"] == created["updated_at"]
        assert datetime.fromisoformat(created["created_at"]).utcoffset() is not None
        assert response.headers["location"] == f"{URL}/{created['id']}"
        assert client.get(response.headers["location"]).json() == created
        stored = db_session.get(Resource, created["id"])
        assert stored is not None
        assert stored.metadata_ == {"watts": 40, "tags": ["a"]}

    def test_owner_is_the_caller_whatever_the_body_says(
        self, client: TestClient, user: User, other_user: User, auth_headers: dict
    ) -> None:
        body = {"name": "Mine", "owner_id": other_user.id, "id": 999}
        response = client.post(URL, json=body, headers=auth_headers)
        assert response.status_code == 201
        assert response.json()["owner_id"] == user.id
        assert response.json()["id"] != 999

    def test_defaults(self, client: TestClient, auth_headers: dict) -> None:
        created = client.post(URL, json={"name": "Bare"}, headers=auth_headers).json()
        assert created["description"] is None
        assert created["metadata"] == {}

    def test_requires_a_token(self, client: TestClient, db_session: Session) -> None:
        response = client.post(URL, json={"name": "Test"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert stored_count(db_session) == 0


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"name": ""}, "Name cannot be empty"),
            ({"name": "   \t"}, "Name cannot be empty"),
            ({"name": "a" * 256}, "Name too long"),
            ({"name": "Test", "metadata": "invalid"}, "Metadata must be object"),
            ({"name": "Test", "metadata": [1, 2]}, "Metadata must be object"),
            ({"name": "Test", "metadata": None}, "Metadata must be object"),
            ({}, "Field required"),
            ({"name": 5}, "valid string"),
            ({"name": "\ud800"}, "no lone surrogates"),
            ({"name": "nul\x00"}, "NUL"),
            ({"name": "ok", "description": "\udfff"}, "no lone surrogates"),
            ({"name": "ok", "description": "a\x00b"}, "NUL"),
            ({"name": "ok", "description": "d" * 10_001}, "at most 10000"),
            ({"name": "ok", "metadata": {"\ud800": 1}}, "no lone surrogates"),
            ({"name": "ok", "metadata": {"k": {"deeper": "\udc00"}}}, "no lone surrogates"),
            ({"name": "ok", "metadata": {"n": float("nan")}}, "finite"),
            ({"name": "ok", "metadata": {"n": [float("inf")]}}, "finite"),
            ({"name": "ok", "metadata": {"n": float("-inf")}}, "finite"),
        ],
    )
    def test_bad_input_is_a_422_and_stores_nothing(
        self,
        client: TestClient,
        auth_headers: dict,
        db_session: Session,
        body: dict,
        message: str,
    ) -> None:
        request = raw_json(body)
        request["headers"].update(auth_headers)

        response = client.post(URL, **request)

        assert response.status_code == 422
        assert message in str(response.json()["detail"])
        assert "input" not in response.text  # the client's data is not echoed back
        assert stored_count(db_session) == 0

    def test_name_of_255_characters_is_fine(self, client: TestClient, auth_headers: dict) -> None:
        response = client.post(URL, json={"name": "é" * 255}, headers=auth_headers)
        assert response.status_code == 201

    def test_metadata_keeps_any_json_text_nul_included(
        self, client: TestClient, auth_headers: dict, db_session: Session
    ) -> None:
        metadata = {"k\x00": ["a\x00b", {"\x00": "\x00"}], "plain": "é"}
        created = client.post(URL, json={"name": "ok", "metadata": metadata}, headers=auth_headers)
        assert created.status_code == 201, created.text
        db_session.expire_all()
        assert db_session.get(Resource, created.json()["id"]).metadata_ == metadata  # type: ignore[union-attr]
        assert client.get(f"{URL}/{created.json()['id']}").json()["metadata"] == metadata

    def test_overflowing_number_is_refused(self, client: TestClient, auth_headers: dict) -> None:
        body = b'{"name": "big", "metadata": {"n": 1e400}}'
        headers = {**auth_headers, "Content-Type": "application/json"}
        response = client.post(URL, content=body, headers=headers)
        assert response.status_code == 422
        assert "finite" in str(response.json()["detail"])

    def test_metadata_depth_limit(
        self, client: TestClient, auth_headers: dict, db_session: Session
    ) -> None:
        def nested(depth: int) -> dict:
            value: dict = {}
            for _ in range(depth - 1):
                value = {"k": value}
            return value

        assert client.post(URL, json={"name": "ok", "metadata": nested(32)}, headers=auth_headers)
        deep = client.post(URL, json={"name": "x", "metadata": nested(33)}, headers=auth_headers)
        assert deep.status_code == 422
        assert "deeper than 32" in str(deep.json()["detail"])
        # A list counts as a level too.
        listy = {
            "name": "x",
            "metadata": {"k": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
        }
        assert client.post(URL, json=listy, headers=auth_headers).status_code == 422
        assert stored_count(db_session) == 1

    def test_a_300_deep_object_is_refused_and_listing_still_works(
        self, client: TestClient, auth_headers: dict, db_session: Session
    ) -> None:
        body = '{"name": "deep", "metadata": ' + '{"k": ' * 300 + "{}" + "}" * 300 + "}"
        headers = {**auth_headers, "Content-Type": "application/json"}

        response = client.post(URL, content=body, headers=headers)

        assert response.status_code == 422
        assert stored_count(db_session) == 0
        assert client.get(URL).status_code == 200

    def test_metadata_size_limit(self, client: TestClient, auth_headers: dict) -> None:
        fits = {"name": "ok", "metadata": {"k": "x" * (64 * 1024 - 20)}}
        assert client.post(URL, json=fits, headers=auth_headers).status_code == 201
        too_big = {"name": "big", "metadata": {"k": "x" * (64 * 1024)}}
        response = client.post(URL, json=too_big, headers=auth_headers)
        assert response.status_code == 422
        assert "larger than 65536 bytes" in str(response.json()["detail"])

    def test_malformed_json(self, client: TestClient, auth_headers: dict) -> None:
        headers = {**auth_headers, "Content-Type": "application/json"}
        response = client.post(URL, content=b'{"name": "x",', headers=headers)
        body = assert_problem(response, 422)
        assert body["errors"][0]["type"] == "json_invalid"

    def test_absurdly_nested_json_body(self, client: TestClient, auth_headers: dict) -> None:
        headers = {**auth_headers, "Content-Type": "application/json"}
        response = client.post(URL, content=b"[" * 100_000 + b"]" * 100_000, headers=headers)
        assert 400 <= response.status_code < 500
        assert response.json()["detail"]

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
    def test_wrong_content_type(
        self, client: TestClient, auth_headers: dict, content_type: str
    ) -> None:
        headers = {**auth_headers, "Content-Type": content_type}
        response = client.post(URL, content=b'{"name": "x"}', headers=headers)
        assert response.status_code in (415, 422)
        assert response.json()["detail"]

    def test_body_over_one_mebibyte(
        self, client: TestClient, auth_headers: dict, db_session: Session
    ) -> None:
        body = {"name": "big", "description": "d" * (1024 * 1024)}
        response = client.post(URL, json=body, headers=auth_headers)
        assert_problem(response, 413, "Request body too large")
        assert stored_count(db_session) == 0

    def test_chunked_body_over_one_mebibyte(self, client: TestClient, auth_headers: dict) -> None:
        def chunks():  # no Content-Length: the limit must hold while streaming
            yield b'{"name": "big", "description": "'
            for _ in range(33):
                yield b"d" * 32 * 1024
            yield b'"}'

        headers = {**auth_headers, "Content-Type": "application/json"}
        response = client.post(URL, content=chunks(), headers=headers)
        assert_problem(response, 413, "Request body too large")


class TestList:
    def test_pages_in_id_order(self, client: TestClient, db_session: Session, user: User) -> None:
        make_resources(db_session, user, 25)

        first = client.get(f"{URL}?skip=0&limit=10")
        second = client.get(f"{URL}?skip=10&limit=10")
        last = client.get(f"{URL}?skip=20&limit=10")

        assert [r["name"] for r in first.json()] == [f"Resource {i}" for i in range(10)]
        assert [r["name"] for r in second.json()] == [f"Resource {i}" for i in range(10, 20)]
        assert len(last.json()) == 5
        assert first.headers["x-total-count"] == "25"

    def test_a_page_past_the_end_still_counts_them_all(
        self, client: TestClient, db_session: Session, user: User, other_user: User
    ) -> None:
        """The count rides on the page's rows; a page with none counts apart."""
        make_resources(db_session, user, 25)
        make_resources(db_session, other_user, 3)

        past = client.get(f"{URL}?skip=30&limit=10")
        theirs = client.get(f"{URL}?skip=5&owner_id={other_user.id}")

        assert (past.json(), past.headers["x-total-count"]) == ([], "28")
        assert (theirs.json(), theirs.headers["x-total-count"]) == ([], "3")
        assert client.get(f"{URL}?skip=27").headers["x-total-count"] == "28"

    def test_link_header(self, client: TestClient, db_session: Session, user: User) -> None:
        make_resources(db_session, user, 25)

        links = client.get(f"{URL}?skip=10&limit=10").headers["link"]

        base = URL
        assert links == (
            f'<{base}?skip=0&limit=10>; rel="first", '
            f'<{base}?skip=0&limit=10>; rel="prev", '
            f'<{base}?skip=20&limit=10>; rel="next", '
            f'<{base}?skip=20&limit=10>; rel="last"'
        )
        first_page = client.get(f"{URL}?limit=10").headers["link"]
        assert 'rel="prev"' not in first_page
        last_page = client.get(f"{URL}?skip=20&limit=10").headers["link"]
        assert 'rel="next"' not in last_page

    def test_empty_list(self, client: TestClient) -> None:
        response = client.get(URL)
        assert response.status_code == 200
        assert response.json() == []
        assert response.headers["x-total-count"] == "0"

    def test_defaults_to_ten(self, client: TestClient, db_session: Session, user: User) -> None:
        make_resources(db_session, user, 12)
        assert len(client.get(URL).json()) == 10

    def test_limit_of_100(self, client: TestClient, db_session: Session, user: User) -> None:
        make_resources(db_session, user, 101)
        assert len(client.get(f"{URL}?limit=100").json()) == 100

    def test_skip_past_the_end(self, client: TestClient, db_session: Session, user: User) -> None:
        make_resources(db_session, user, 3)
        response = client.get(f"{URL}?skip={2**63 - 1}")
        assert response.status_code == 200
        assert response.json() == []

    @pytest.mark.parametrize(
        "query",
        ["skip=-1", "limit=0", "limit=101", "limit=-5", "skip=abc", f"skip={2**63}", "limit=1.5"],
    )
    def test_bad_paging_is_a_422(self, client: TestClient, query: str) -> None:
        response = client.get(f"{URL}?{query}")
        assert response.status_code == 422
        assert response.json()["detail"]


class TestReadOne:
    def test_get(self, client: TestClient, db_session: Session, user: User) -> None:
        (resource,) = make_resources(db_session, user, 1)
        response = client.get(f"{URL}/{resource.id}")
        assert response.status_code == 200
        assert response.json()["name"] == "Resource 0"

    @pytest.mark.parametrize("resource_id", ["0", "999999", str(2**31), str(2**63), "1" * 40])
    def test_missing_or_impossible_ids_are_404(self, client: TestClient, resource_id: str) -> None:
        response = client.get(f"{URL}/{resource_id}")
        assert_problem(response, 404, "Resource not found")

    @pytest.mark.parametrize("resource_id", ["abc", "-1", "1.5", "1e3"])
    def test_a_path_that_is_no_resource_id_is_no_url(
        self, client: TestClient, resource_id: str
    ) -> None:
        # Ids are digits in the route itself, so that `/resources/bulk` is never read as an id.
        assert_problem(client.get(f"{URL}/{resource_id}"), 404, "Not Found")


class TestChange:
    @pytest.fixture
    def resource(self, db_session: Session, user: User) -> Resource:
        resource = Resource(
            name="Original", description="Keep?", metadata_={"a": 1}, owner_id=user.id
        )
        db_session.add(resource)
        db_session.commit()
        return resource

    def test_put_replaces(self, client: TestClient, resource: Resource, auth_headers: dict) -> None:
        response = client.put(f"{URL}/{resource.id}", json={"name": "New"}, headers=auth_headers)

        assert response.status_code == 200
        body = response.json()
        assert (body["name"], body["description"], body["metadata"]) == ("New", None, {})
        assert body["updated_at"] > body["created_at"]

    def test_put_requires_a_name(
        self, client: TestClient, resource: Resource, auth_headers: dict
    ) -> None:
        response = client.put(
            f"{URL}/{resource.id}", json={"description": "x"}, headers=auth_headers
        )
        assert response.status_code == 422

    def test_patch_changes_only_given_fields(
        self, client: TestClient, resource: Resource, auth_headers: dict, db_session: Session
    ) -> None:
        response = client.patch(
            f"{URL}/{resource.id}", json={"metadata": {"b": 2}}, headers=auth_headers
        )

        assert response.status_code == 200
        body = response.json()
        assert (body["name"], body["description"], body["metadata"]) == (
            "Original",
            "Keep?",
            {"b": 2},
        )
        db_session.expire_all()
        assert db_session.get(Resource, resource.id).metadata_ == {"b": 2}  # type: ignore[union-attr]

    def test_patch_null_description_clears_it(
        self, client: TestClient, resource: Resource, auth_headers: dict
    ) -> None:
        response = client.patch(
            f"{URL}/{resource.id}", json={"description": None}, headers=auth_headers
        )
        assert response.json()["description"] is None

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"name": None}, "Name cannot be null"),
            ({"metadata": None}, "Metadata must be object"),
            ({"name": ""}, "Name cannot be empty"),
            ({"metadata": 3}, "Metadata must be object"),
        ],
    )
    def test_patch_validates(
        self, client: TestClient, resource: Resource, auth_headers: dict, body: dict, message: str
    ) -> None:
        response = client.patch(f"{URL}/{resource.id}", json=body, headers=auth_headers)
        assert response.status_code == 422
        assert message in str(response.json()["detail"])

    def test_delete(
        self, client: TestClient, resource: Resource, auth_headers: dict, db_session: Session
    ) -> None:
        response = client.delete(f"{URL}/{resource.id}", headers=auth_headers)

        assert response.status_code == 204
        assert response.content == b""
        assert client.get(f"{URL}/{resource.id}").status_code == 404
        assert stored_count(db_session) == 0

    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_only_the_owner(
        self,
        client: TestClient,
        resource: Resource,
        other_headers: dict,
        db_session: Session,
        method: str,
    ) -> None:
        kwargs = {} if method == "delete" else {"json": {"name": "Hacked"}}
        response = client.request(method, f"{URL}/{resource.id}", headers=other_headers, **kwargs)

        assert response.status_code == 403
        assert response.json()["detail"] == "Only the owner may change this resource"
        db_session.expire_all()
        assert db_session.get(Resource, resource.id).name == "Original"  # type: ignore[union-attr]

    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_requires_a_token(self, client: TestClient, resource: Resource, method: str) -> None:
        kwargs = {} if method == "delete" else {"json": {"name": "Anon"}}
        response = client.request(method, f"{URL}/{resource.id}", **kwargs)
        assert response.status_code == 401

    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    @pytest.mark.parametrize("resource_id", ["0", "424242", str(2**31), str(2**63), "-7"])
    def test_missing_or_impossible_ids_are_404(
        self, client: TestClient, auth_headers: dict, method: str, resource_id: str
    ) -> None:
        kwargs = {} if method == "delete" else {"json": {"name": "Ghost"}}
        response = client.request(method, f"{URL}/{resource_id}", headers=auth_headers, **kwargs)
        assert response.status_code == 404


class TestBulk:
    def test_creates_all_in_order(
        self, client: TestClient, user: User, auth_headers: dict, db_session: Session
    ) -> None:
        items = [{"name": f"Item {i}", "metadata": {"i": i}} for i in range(50)]

        response = client.post(f"{URL}/bulk", json=items, headers=auth_headers)

        assert response.status_code == 201
        created = response.json()
        assert [r["name"] for r in created] == [f"Item {i}" for i in range(50)]
        assert [r["id"] for r in created] == sorted(r["id"] for r in created)
        assert {r["owner_id"] for r in created} == {user.id}
        assert stored_count(db_session) == 50

    # On PostgreSQL, a few rows are inserted with INSERT … RETURNING, more with COPY.
    @pytest.mark.parametrize("more", [0, COPY_PAYS_FROM])
    def test_what_the_answer_shows_is_what_was_stored(
        self, client: TestClient, auth_headers: dict, more: int
    ) -> None:
        """The answer is built without reading the rows back: each one, read afresh, is the
        same, whatever the text (quotes, tabs, backslashes, NUL escapes in metadata, emoji)."""
        awkward = 'tab\tquote"back\\slash\nline 😀'
        items = [
            {
                "name": awkward,
                "description": awkward,
                "metadata": {"k": awkward, "nul": "a\u0000b"},
            },
            {"name": "plain"},
            {
                "name": "deep",
                "description": None,
                "metadata": {"a": [1, 2.5, None, True, {"b": []}]},
            },
            *[{"name": f"more {n}", "metadata": {"n": n}} for n in range(more)],
        ]

        created = client.post(f"{URL}/bulk", json=items, headers=auth_headers).json()

        assert [client.get(f"{URL}/{item['id']}").json() for item in created] == created
        assert created[1]["description"] is None
        assert created[1]["metadata"] == {}
        assert {item["version"] for item in created} == {1}

    def test_the_portable_insert_gives_the_same_rows(self, db_session: Session, user: User) -> None:
        """The INSERT … RETURNING used where the database has no faster way: ids in order."""
        from app.database import utcnow
        from app.repositories import ResourceRepository

        now = utcnow()
        shared = {"owner_id": user.id, "version": 1, "created_at": now, "updated_at": now}
        rows = [{"name": f"r{n}", "description": None, "metadata": {"n": n}} for n in range(3)]
        ids = ResourceRepository(db_session).insert_many_returning(rows, shared)

        stored = [db_session.get(Resource, new_id) for new_id in ids]
        assert [(r.name, r.metadata_, r.created_at) for r in stored if r] == [
            (f"r{n}", {"n": n}, now) for n in range(3)
        ]

    def test_one_bad_item_names_its_index_and_stores_nothing(
        self, client: TestClient, auth_headers: dict, db_session: Session
    ) -> None:
        items = [{"name": "fine"}] * 5 + [{"name": ""}] + [{"name": "fine"}] * 5

        response = client.post(f"{URL}/bulk", json=items, headers=auth_headers)

        body = assert_problem(response, 422, "body.5.name: Name cannot be empty")
        (error,) = body["errors"]
        assert error == {
            "loc": ["body", 5, "name"],
            "msg": "Name cannot be empty",
            "type": "value_error",
        }
        assert stored_count(db_session) == 0

    def test_a_failed_commit_stores_nothing(
        self, client: TestClient, auth_headers: dict, db_session: Session, monkeypatch
    ) -> None:
        """Atomic even when the database, not validation, refuses: the whole batch rolls back."""
        from sqlalchemy.exc import OperationalError

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise OperationalError("INSERT", {}, Exception("disk full"))

        monkeypatch.setattr(db_session, "commit", refuse)
        response = client.post(
            f"{URL}/bulk", json=[{"name": "a"}, {"name": "b"}], headers=auth_headers
        )

        assert_problem(response, 503, "Database unavailable")
        monkeypatch.undo()
        assert stored_count(db_session) == 0

    @pytest.mark.parametrize("count", [0, 1001])
    def test_between_1_and_1000_items(
        self, client: TestClient, auth_headers: dict, count: int
    ) -> None:
        items = [{"name": "x"}] * count
        response = client.post(f"{URL}/bulk", json=items, headers=auth_headers)
        assert response.status_code == 422

    def test_one_thousand_items(self, client: TestClient, auth_headers: dict) -> None:
        response = client.post(f"{URL}/bulk", json=[{"name": "x"}] * 1000, headers=auth_headers)
        assert response.status_code == 201
        assert len(response.json()) == 1000

    @pytest.mark.parametrize("body", [{"name": "not a list"}, "text", [1, 2]])
    def test_must_be_a_list_of_objects(
        self, client: TestClient, auth_headers: dict, body: object
    ) -> None:
        assert client.post(f"{URL}/bulk", json=body, headers=auth_headers).status_code == 422

    def test_requires_a_token(self, client: TestClient) -> None:
        assert client.post(f"{URL}/bulk", json=[{"name": "x"}]).status_code == 401


class TestQueryCounts:
    """No N+1: the number of statements does not grow with the page or the batch."""

    @pytest.mark.parametrize("limit", [1, 100])
    def test_a_counted_page_is_one_query(
        self, client: TestClient, db_session: Session, user: User, assert_num_queries, limit: int
    ) -> None:
        make_resources(db_session, user, 100)
        with assert_num_queries(1):  # the page, the total riding on its rows
            response = client.get(f"{URL}?limit={limit}")
        assert len(response.json()) == limit
        assert response.headers["x-total-count"] == "100"

    @pytest.mark.parametrize("size", [1, COPY_PAYS_FROM, 1000])
    def test_a_bulk_create_takes_the_same_statements_at_any_size(
        self,
        client: TestClient,
        db_session: Session,
        auth_headers: dict,
        assert_num_queries,
        size: int,
    ) -> None:
        items = [{"name": f"n{i}", "metadata": {"i": i}} for i in range(size)]
        # The caller; then one INSERT … RETURNING for one item, else on SQLite one executemany
        # and the last new id; on PostgreSQL one INSERT … RETURNING, or from COPY_PAYS_FROM
        # rows the new ids from the sequence and one COPY (the driver's, which no statement
        # count sees).
        sqlite = db_session.get_bind().dialect.name == "sqlite"
        statements = 3 if sqlite and size > 1 else 2
        with assert_num_queries(statements):
            response = client.post(f"{URL}/bulk", json=items, headers=auth_headers)
        assert response.status_code == 201
