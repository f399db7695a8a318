"""covering compartment date index (a record window reads only the index)

The record window scans a patient's dated index rows and checks `low` and `resource_seq` for
each. With both in the index, PostgreSQL answers from the index alone (index-only scan) and
keeps choosing it for a patient who owns a large share of the table, instead of reading the
whole table; SQLite skips one table lookup per row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 07:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_idx_date_compartment", table_name="idx_date")
    op.create_index(
        "ix_idx_date_compartment",
        "idx_date",
        ["res_type", "param", "compartment", "high", "low", "resource_seq"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_idx_date_compartment", table_name="idx_date")
    op.create_index(
        "ix_idx_date_compartment",
        "idx_date",
        ["res_type", "param", "compartment", "high"],
        unique=False,
    )
