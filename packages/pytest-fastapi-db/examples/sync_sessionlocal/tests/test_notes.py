import pytest
from notes_app.models import AuditEntry, Note
from sqlalchemy import select


def test_the_seeded_note_is_there(client):
    assert [note["text"] for note in client.get("/notes").json()] == ["Welcome"]


def test_create_and_list(client, auth_headers, user):
    created = client.post("/notes", params={"text": "mine"}, headers=auth_headers)
    assert created.status_code == 201
    assert created.json()["owner_id"] == user.id
    assert [note["text"] for note in client.get("/notes").json()] == ["Welcome", "mine"]


def test_an_update_answers_with_what_was_stored(client, auth_headers, db_session):
    note_id = client.post("/notes", params={"text": "old"}, headers=auth_headers).json()["id"]
    held = db_session.get(Note, note_id)  # the test holds the same row
    assert (
        client.put(f"/notes/{note_id}", params={"text": "new"}, headers=auth_headers).json()["text"]
        == "new"
    )
    assert held.text == "new"


@pytest.mark.parametrize("method", ["put", "delete"])
def test_only_the_owner_may_change_a_note(client, auth_headers, other_user, tokens, method):
    note_id = client.post("/notes", params={"text": "x"}, headers=auth_headers).json()["id"]
    stranger = tokens.headers(other_user)
    response = client.request(method, f"/notes/{note_id}", params={"text": "y"}, headers=stranger)
    assert response.status_code == 403


@pytest.mark.parametrize("kind", ["expired", "tampered", "unsigned"])
def test_bad_tokens_are_refused(client, user, tokens, kind):
    response = client.post("/notes", params={"text": "x"}, headers=tokens.headers(user, kind))
    assert response.status_code == 401


def test_background_work_through_session_local_stays_in_the_test(client, auth_headers, db_session):
    client.post("/notes", params={"text": "audited"}, headers=auth_headers)
    assert db_session.scalars(select(AuditEntry.message)).all() == [
        f"note {db_session.scalar(select(Note.id).where(Note.text == 'audited'))} created"
    ]


def test_a_list_is_one_query(client, make_user, db_session, assert_num_queries):
    owner = make_user()
    db_session.add_all(Note(text=f"n{i}", owner_id=owner.id) for i in range(20))
    db_session.commit()
    with assert_num_queries(1):
        assert len(client.get("/notes").json()) == 21


def test_commits_are_captured(client, auth_headers, capture_after_commit):
    with capture_after_commit() as commits:
        client.post("/notes", params={"text": "seen"}, headers=auth_headers)
    assert [note.text for note in commits.created(Note)] == ["seen"]


@pytest.mark.db(transaction=True)
def test_a_transactional_test_commits_for_real(client, auth_headers, db_session):
    client.post("/notes", params={"text": "durable"}, headers=auth_headers)
    db_session.rollback()  # a rollback now would undo anything not really committed
    texts = db_session.scalars(select(Note.text).order_by(Note.id)).all()
    assert texts == ["Welcome", "durable"]


def test_and_the_next_test_starts_from_the_seed_again(client):
    assert [note["text"] for note in client.get("/notes").json()] == ["Welcome"]
