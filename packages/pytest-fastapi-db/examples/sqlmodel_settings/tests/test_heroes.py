import pytest
from heroes.config import database_url
from heroes.main import Hero
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

ME = {"X-User": "me"}


def test_the_app_was_pointed_at_the_test_database_through_its_parts(db_engine):
    assert database_url() == make_url(db_engine.url)


def test_the_session_is_sqlmodels(db_session):
    assert isinstance(db_session, Session)
    assert [hero.name for hero in db_session.exec(select(Hero))] == ["Deadpond"]


def test_create_and_list(client):
    assert client.post("/heroes", json={"name": "Spider-Boy"}, headers=ME).status_code == 201
    assert [hero["name"] for hero in client.get("/heroes").json()] == ["Deadpond", "Spider-Boy"]


def test_only_the_owner_renames(client):
    hero_id = client.post("/heroes", json={"name": "Rusty"}, headers=ME).json()["id"]
    stranger = client.patch(f"/heroes/{hero_id}", json={"name": "X"}, headers={"X-User": "them"})
    assert stranger.status_code == 403
    renamed = client.patch(f"/heroes/{hero_id}", json={"name": "Rusty-Man"}, headers=ME)
    assert renamed.json()["name"] == "Rusty-Man"


def test_anonymous_writes_are_refused(client):
    assert client.post("/heroes", json={"name": "Nobody"}).status_code == 401


def test_a_list_is_one_query(client, assert_num_queries):
    with assert_num_queries(1):
        client.get("/heroes")


def test_commits_are_captured(client, capture_after_commit):
    with capture_after_commit() as commits:
        client.post("/heroes", json={"name": "Captured"}, headers=ME)
    assert [hero.name for hero in commits.created(Hero)] == ["Captured"]


@pytest.mark.db(transaction=True)
def test_a_transactional_test_commits_for_real(client, db_session):
    client.post("/heroes", json={"name": "Durable"}, headers=ME)
    db_session.rollback()
    assert [hero.name for hero in db_session.exec(select(Hero).order_by(Hero.id))] == [
        "Deadpond",
        "Durable",
    ]
