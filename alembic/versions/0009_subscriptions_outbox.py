"""subscriptions: the outbox, subscription and delivery state, timers, worker leases

Topic-based Subscriptions (DESIGN §7.3). An outbox row is written in the transaction of the
change that caused it; the dispatcher numbers it per subscription (subscription_event); the
delivery workers keep one delivery_state row per subscription, locked while they send.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Body = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "outbox_event",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("focus_type", sa.String(length=64), nullable=False),
        sa.Column("focus_id", sa.String(length=64), nullable=False),
        sa.Column("focus_version", sa.Integer(), nullable=True),
        sa.Column("focus_deleted", sa.Boolean(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("care_plan_id", sa.String(length=64), nullable=True),
        sa.Column("decision", sa.String(length=64), nullable=True),
        sa.Column("occurred", sa.DateTime(), nullable=False),
        sa.Column("dispatched", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_event")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_outbox_event_pending",
        "outbox_event",
        ["id"],
        unique=False,
        sqlite_where=sa.text("NOT dispatched"),
        postgresql_where=sa.text("NOT dispatched"),
    )
    op.create_table(
        "subscription_state",
        sa.Column("sub_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("filters", Body, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("secret", sa.String(length=255), nullable=False),
        sa.Column("base_url", sa.String(length=1024), nullable=False),
        sa.Column("heartbeat_seconds", sa.Integer(), nullable=True),
        sa.Column("events_since_start", sa.BigInteger(), nullable=False),
        sa.Column("start_after", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sub_id", name=op.f("pk_subscription_state")),
    )
    op.create_table(
        "delivery_state",
        sa.Column("sub_id", sa.String(length=64), nullable=False),
        sa.Column("seen_version", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failing_since", sa.DateTime(), nullable=True),
        sa.Column("next_attempt", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_due", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("sub_id", name=op.f("pk_delivery_state")),
    )
    op.create_table(
        "subscription_event",
        sa.Column("sub_id", sa.String(length=64), nullable=False),
        sa.Column("event_number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("delivered", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["outbox_event.id"],
            name=op.f("fk_subscription_event_event_id_outbox_event"),
        ),
        sa.PrimaryKeyConstraint("sub_id", "event_number", name=op.f("pk_subscription_event")),
    )
    op.create_index(
        op.f("ix_subscription_event_event_id"), "subscription_event", ["event_id"], unique=False
    )
    op.create_index(
        "ix_subscription_event_pending",
        "subscription_event",
        ["sub_id", "event_number"],
        unique=False,
        sqlite_where=sa.text("delivered IS NULL"),
        postgresql_where=sa.text("delivered IS NULL"),
    )
    op.create_table(
        "event_timer",
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("due", sa.DateTime(), nullable=False),
        sa.Column("fired", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", "kind", name=op.f("pk_event_timer")),
    )
    op.create_index(
        "ix_event_timer_due",
        "event_timer",
        ["due"],
        unique=False,
        sqlite_where=sa.text("fired IS NULL"),
        postgresql_where=sa.text("fired IS NULL"),
    )
    op.create_table(
        "worker_lease",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("expires", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_lease")),
    )


def downgrade() -> None:
    op.drop_table("worker_lease")
    op.drop_index("ix_event_timer_due", table_name="event_timer")
    op.drop_table("event_timer")
    op.drop_index("ix_subscription_event_pending", table_name="subscription_event")
    op.drop_index(op.f("ix_subscription_event_event_id"), table_name="subscription_event")
    op.drop_table("subscription_event")
    op.drop_table("delivery_state")
    op.drop_table("subscription_state")
    op.drop_index("ix_outbox_event_pending", table_name="outbox_event")
    op.drop_table("outbox_event")
