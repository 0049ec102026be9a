import pytest
from heroes.main import Hero


@pytest.fixture(scope="session")
def db_seed():
    return lambda session: session.add(Hero(name="Deadpond", owner="house"))
