import pytest
from todo_app.main import Account


@pytest.fixture(scope="session")
def db_seed():
    return lambda session: session.add_all([Account(handle="ada"), Account(handle="bob")])
