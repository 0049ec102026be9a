"""How the test kit makes users for this app (`fastapi_user_factory` in pyproject.toml)."""

from itertools import count
from typing import Any

from sqlalchemy.orm import Session

from app.auth import hash_password
from app.models import User

PASSWORD = "correct horse battery staple"
_serial = count(1)


def create_user(
    session: Session,
    *,
    username: str | None = None,
    password: str | None = PASSWORD,
    is_active: bool = True,
    **fields: Any,
) -> User:
    username = username or f"user{next(_serial)}"
    fields.setdefault("email", f"{username}@example.com")
    user = User(
        username=username,
        hashed_password=hash_password(password) if password else None,
        is_active=is_active,
        **fields,
    )
    session.add(user)
    return user
