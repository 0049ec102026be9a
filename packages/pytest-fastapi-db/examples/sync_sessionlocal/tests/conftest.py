from itertools import count

import pytest
from notes_app.main import create_token
from notes_app.models import Note, User

serial = count()


def create_user(session, **fields):
    user = User(name=fields.get("name") or f"user{next(serial)}")
    session.add(user)
    return user


@pytest.fixture
def mint_token():
    """This app's tokens name the user's id and take a lifetime."""

    def mint(user, expires_delta=None):
        return (
            create_token(user.id) if expires_delta is None else create_token(user.id, expires_delta)
        )

    return mint


@pytest.fixture(scope="session")
def db_seed():
    """A house user with a welcome note, in every test's database."""

    def seed(session):
        house = User(name="house")
        session.add(house)
        session.flush()
        session.add(Note(text="Welcome", owner_id=house.id))

    return seed
