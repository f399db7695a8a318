"""partial reference url index (only rows that have a url)

Only canonical and absolute references have a `target_url`; the other 99.9% of reference rows
held NULL there, and every write still added them to this index under ~16 (type, parameter)
keys: about 20 of the ~200 pages a session submission wrote to the SQLite WAL. Searches by
url compare `target_url = ?`, which implies NOT NULL, so both databases still use the index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HAS_URL = sa.text("target_url IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_idx_reference_url", table_name="idx_reference")
    op.create_index(
        "ix_idx_reference_url",
        "idx_reference",
        ["res_type", "param", "target_url"],
        unique=False,
        sqlite_where=_HAS_URL,
        postgresql_where=_HAS_URL,
    )


def downgrade() -> None:
    op.drop_index("ix_idx_reference_url", table_name="idx_reference")
    op.create_index(
        "ix_idx_reference_url", "idx_reference", ["res_type", "param", "target_url"], unique=False
    )
