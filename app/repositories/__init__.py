"""Queries, and nothing else: no rules, no commits. The resources' (`resources`), the
accounts' (`accounts`: users, login sessions, idempotency records), and the locked lookups
both use (`locking`)."""

from app.driver_queries import Reading
from app.repositories.accounts import (
    Caller,
    IdempotencyRepository,
    LoginSessionRepository,
    UserRepository,
    find_caller,
)
from app.repositories.resources import (
    COPY_PAYS_FROM,
    SHOWN_BY_ID,
    SHOWN_COLUMNS,
    ResourceFilter,
    ResourceOrder,
    ResourceReads,
    ResourceRepository,
    ShownResource,
)

__all__ = [
    "COPY_PAYS_FROM",
    "SHOWN_BY_ID",
    "SHOWN_COLUMNS",
    "Caller",
    "IdempotencyRepository",
    "LoginSessionRepository",
    "Reading",
    "ResourceFilter",
    "ResourceOrder",
    "ResourceReads",
    "ResourceRepository",
    "ShownResource",
    "UserRepository",
    "find_caller",
]
