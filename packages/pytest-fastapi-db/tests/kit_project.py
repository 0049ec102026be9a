"""A small FastAPI + SQLAlchemy app, written into each pytester project of the plugin's tests."""

import pytest


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """In a subprocess: the kit installs global SQLAlchemy hooks that must not meet ours."""
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", *args)


APP = """
import os
from datetime import UTC, datetime, timedelta
from functools import cache

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException
from sqlalchemy import String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

KEY = "k" * 48


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


@cache
def get_engine():
    return create_engine(os.environ["DATABASE_URL"])


def get_db():
    with Session(get_engine()) as session:
        yield session


def create_token(data, expires_delta=None):
    now = datetime.now(UTC)
    claims = {**data, "iat": now, "exp": now + (expires_delta or timedelta(minutes=5))}
    return jwt.encode(claims, KEY, algorithm="HS256")


def create_user(session, **fields):
    user = User(email=fields.get("email") or f"u{session.scalar(select(func.count(User.id)))}@x.io")
    session.add(user)
    return user


app = FastAPI()


@app.post("/items")
def add_item(name: str, db: Session = Depends(get_db)):
    item = Item(name=name)
    db.add(item)
    db.commit()
    return {"id": item.id}


@app.get("/items/count")
def count_items(db: Session = Depends(get_db)):
    return {"count": db.scalar(select(func.count(Item.id)))}


@app.get("/me")
def me(authorization: str = Header(""), db: Session = Depends(get_db)):
    try:
        claims = jwt.decode(authorization.removeprefix("Bearer "), KEY, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise HTTPException(401, "bad token") from None
    user = db.scalar(select(User).where(User.email == claims["sub"]))
    if user is None:
        raise HTTPException(401, "no such user")
    return {"email": user.email}
"""

INI = """
[pytest]
fastapi_app = kitapp:app
fastapi_db_metadata = kitapp:Base
fastapi_db_dependency = kitapp:get_db
fastapi_token_factory = kitapp:create_token
fastapi_user_factory = kitapp:create_user
asyncio_default_fixture_loop_scope = function
"""
