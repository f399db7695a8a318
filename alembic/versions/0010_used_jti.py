"""used jti: the ids of signed JWTs already presented, so each works once on every replica

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "used_jti",
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("jti", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name=op.f("pk_used_jti")),
    )
    op.create_index("ix_used_jti_expires_at", "used_jti", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_jti_expires_at", table_name="used_jti")
    op.drop_table("used_jti")
