"""resources: indexes on (name, id) and (created_at, id), so that the list sorted by name or
by creation time pages by key at any depth

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_resources_name_id", "resources", ["name", "id"])
    op.create_index("ix_resources_created_at_id", "resources", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_resources_created_at_id", table_name="resources")
    op.drop_index("ix_resources_name_id", table_name="resources")
