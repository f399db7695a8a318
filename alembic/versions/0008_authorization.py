"""authorization: the built-in token server's clients, signing keys and used assertion ids

Clients registered with `careplan clients add`, the service's own signing keys (rotated by
`careplan keys rotate`; times in epoch seconds) and the `jti` of every client assertion until it
expires: the primary key (client_id, jti) makes a replayed assertion fail on insert.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_client",
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("allowed_scopes", sa.Text(), nullable=False),
        sa.Column("jwks", sa.JSON(), nullable=True),
        sa.Column("jwks_url", sa.String(length=2048), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_auth_client")),
    )
    op.create_table(
        "auth_signing_key",
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("private_jwk", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("superseded_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_auth_signing_key")),
    )
    op.create_table(
        "auth_used_jti",
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("jti", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name=op.f("pk_auth_used_jti")),
    )
    op.create_index("ix_auth_used_jti_expires_at", "auth_used_jti", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_auth_used_jti_expires_at", table_name="auth_used_jti")
    op.drop_table("auth_used_jti")
    op.drop_table("auth_signing_key")
    op.drop_table("auth_client")
