"""resources.metadata: PostgreSQL `json` instead of `jsonb`, which refuses NUL escapes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE resources ALTER COLUMN metadata TYPE json USING metadata::json")


def downgrade() -> None:
    # Fails, naming the value, while any metadata holds a NUL: `jsonb` cannot keep it.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE resources ALTER COLUMN metadata TYPE jsonb USING metadata::jsonb")
