"""index state: the fingerprint of the indexer that built the search index rows

A release that adds or changes a search parameter changes the rows every stored resource
should have. `careplan migrate` (and start-up with CAREPLAN_MIGRATE_ON_START) compares this
fingerprint with the release's and reindexes when they differ (service/store/reindex.py). A
database migrated to this revision has none yet, so it is reindexed once: nothing recorded
what built its rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "index_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_index_state")),
    )


def downgrade() -> None:
    op.drop_table("index_state")
