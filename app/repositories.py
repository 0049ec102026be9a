"""Queries, and nothing else: no rules, no commits."""

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Resource, User, id_can_exist


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_email(self, email: str) -> User | None:
        return self.session.scalar(select(User).where(User.email == email))

    def is_active(self, user_id: int) -> bool:
        return bool(self.session.scalar(select(User.is_active).where(User.id == user_id)))

    def by_login(self, login: str) -> User | None:
        """The user whose email or username is `login`."""
        column = User.email if "@" in login else User.username
        return self.session.scalar(select(User).where(column == login))

    def taken(self, email: str, username: str) -> list[str]:
        """Which of `email` and `username` another user already has."""
        rows = self.session.execute(
            select(User.email, User.username).where(
                (User.email == email) | (User.username == username)
            )
        ).all()
        taken = []
        if any(row.email == email for row in rows):
            taken.append("email")
        if any(row.username == username for row in rows):
            taken.append("username")
        return taken


class ResourceRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, resource_id: int) -> Resource | None:
        if not id_can_exist(resource_id):
            return None
        return self.session.get(Resource, resource_id)

    def get_for_update(self, resource_id: int) -> Resource | None:
        """The row, locked until the transaction ends (SELECT … FOR UPDATE; SQLite's writers
        are serialised anyway), and read afresh: a concurrent delete is seen as missing."""
        if not id_can_exist(resource_id):
            return None
        return self.session.get(Resource, resource_id, with_for_update=True, populate_existing=True)

    def page(self, skip: int, limit: int) -> Sequence[Resource]:
        query = select(Resource).order_by(Resource.id).offset(skip).limit(limit)
        return self.session.scalars(query).all()

    def count(self, owner_id: int | None = None) -> int:
        query = select(func.count()).select_from(Resource)
        if owner_id is not None:
            query = query.where(Resource.owner_id == owner_id)
        return self.session.scalar(query) or 0
