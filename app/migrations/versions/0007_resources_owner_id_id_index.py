"""resources: one index on (owner_id, id) instead of owner_id alone, so that one owner's
resources page by key in id order at any depth

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_resources_owner_id_id", "resources", ["owner_id", "id"])
    op.drop_index(op.f("ix_resources_owner_id"), table_name="resources")


def downgrade() -> None:
    op.create_index(op.f("ix_resources_owner_id"), "resources", ["owner_id"])
    op.drop_index("ix_resources_owner_id_id", table_name="resources")
