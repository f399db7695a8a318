"""The schema: current resources, their full history, and search index rows.

alembic/ owns the schema; this metadata is what `alembic check` compares the database with.
"""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing rowid.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Body = sa.JSON().with_variant(JSONB(), "postgresql")

resource = sa.Table(
    "resource",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", sa.DateTime, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("body", Body, nullable=True),
    sa.UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    sa.Index("ix_resource_type_updated", "res_type", "last_updated"),
)

# What built the search index rows: the fingerprint of the indexer (service/store/reindex.py)
# that last brought every stored resource's rows in line. One row.
index_state = sa.Table(
    "index_state",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("updated", sa.DateTime, nullable=False),
)

resource_history = sa.Table(
    "resource_history",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", sa.DateTime, nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("body", Body, nullable=True),
    sa.UniqueConstraint("res_type", "res_id", "version", name="uq_history_type_id_version"),
    sa.Index("ix_history_type_updated", "res_type", "last_updated"),
    sa.Index("ix_history_updated", "last_updated"),
)


def _index_table(
    name: str,
    *columns: sa.Column[Any],
    indexes: tuple[sa.Index, ...] = (),
    seq_columns: tuple[str, ...] = (),
) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "resource_seq",
            BigId,
            sa.ForeignKey("resource.seq", ondelete="CASCADE"),
            nullable=False,
        ),
        # The resource's type: parameter names repeat across types ("patient", "code", "date"),
        # so every lookup index leads with it to stay selective as other types grow.
        sa.Column("res_type", sa.String(64), nullable=False, server_default=""),
        sa.Column("param", sa.String(64), nullable=False),
        *columns,
        # Per-candidate checks look up (resource, param, values...). It names at least as many
        # columns as the value index, so SQLite's planner (which counts equality columns)
        # prefers it instead of walking every row of the value index.
        sa.Index(f"ix_{name}_seq_param", "resource_seq", "param", *seq_columns),
        *indexes,
    )


idx_token = _index_table(
    "idx_token",
    sa.Column("system", sa.String(255), nullable=True),
    sa.Column("code", sa.String(512), nullable=False),
    indexes=(sa.Index("ix_idx_token_lookup", "res_type", "param", "code", "system"),),
    seq_columns=("code", "system"),
)

idx_string = _index_table(
    "idx_string",
    sa.Column("value_norm", sa.String(512), nullable=False),
    sa.Column("value_exact", sa.String(512), nullable=False),
    indexes=(sa.Index("ix_idx_string_lookup", "res_type", "param", "value_norm"),),
    seq_columns=("value_norm",),
)

idx_reference = _index_table(
    "idx_reference",
    sa.Column("target_type", sa.String(64), nullable=True),
    sa.Column("target_id", sa.String(64), nullable=True),
    sa.Column("target_url", sa.String(512), nullable=True),
    sa.Column("target_version", sa.String(64), nullable=True),
    indexes=(
        sa.Index("ix_idx_reference_target", "res_type", "param", "target_id", "target_type"),
        # Partial: only canonical and absolute references have a url (alembic 0006).
        sa.Index(
            "ix_idx_reference_url",
            "res_type",
            "param",
            "target_url",
            sqlite_where=sa.text("target_url IS NOT NULL"),
            postgresql_where=sa.text("target_url IS NOT NULL"),
        ),
    ),
    seq_columns=("target_id", "target_type"),
)

idx_date = _index_table(
    "idx_date",
    sa.Column("low", sa.DateTime, nullable=False),
    sa.Column("high", sa.DateTime, nullable=False),
    # "Patient/<id>" for resources in a patient's compartment: a patient's record window is
    # one index range scan, whatever the size of their history.
    sa.Column("compartment", sa.String(80), nullable=True),
    indexes=(
        sa.Index("ix_idx_date_lookup", "res_type", "param", "low", "high"),
        # Covering (low, resource_seq too): the record window is an index-only scan.
        sa.Index(
            "ix_idx_date_compartment",
            "res_type",
            "param",
            "compartment",
            "high",
            "low",
            "resource_seq",
        ),
    ),
    seq_columns=("low", "high"),
)

idx_quantity = _index_table(
    "idx_quantity",
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("system", sa.String(255), nullable=True),
    sa.Column("code", sa.String(64), nullable=True),
    indexes=(sa.Index("ix_idx_quantity_lookup", "res_type", "param", "value"),),
    seq_columns=("value",),
)

# Makes conditional create race-free: the second of two identical If-None-Exist creates
# fails on this key instead of creating a duplicate.
conditional_key = sa.Table(
    "conditional_key",
    metadata,
    sa.Column("res_type", sa.String(64), primary_key=True),
    sa.Column("criteria", sa.String(64), primary_key=True),  # sha256 of the normalized query
    sa.Column(
        "resource_seq",
        BigId,
        sa.ForeignKey("resource.seq", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
)

# The built-in authorization server (service/auth): registered clients, the service's signing
# keys (times in epoch seconds, as the tokens carry them) and the client-assertion ids already
# used. The primary key of auth_used_jti is what refuses a replayed assertion.
auth_client = sa.Table(
    "auth_client",
    metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("allowed_scopes", sa.Text, nullable=False),
    sa.Column("jwks", sa.JSON, nullable=True),
    sa.Column("jwks_url", sa.String(2048), nullable=True),
    sa.Column("created", sa.DateTime, nullable=False),
)

auth_signing_key = sa.Table(
    "auth_signing_key",
    metadata,
    sa.Column("kid", sa.String(128), primary_key=True),
    sa.Column("private_jwk", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("superseded_at", sa.Float, nullable=True),
)

auth_used_jti = sa.Table(
    "auth_used_jti",
    metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("jti", sa.String(256), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_auth_used_jti_expires_at", "expires_at"),
)

INDEX_TABLES = {
    "token": idx_token,
    "string": idx_string,
    "reference": idx_reference,
    "date": idx_date,
    "quantity": idx_quantity,
}

# --- Subscriptions (DESIGN §7.3): the outbox and what the delivery workers keep ---------------

# The outbox: one row per topic event (service/notify/topics.py), written in the transaction
# of the change that caused it. The dispatcher numbers each event for the subscriptions it
# matches (subscription_event) and deletes the ones no subscription wants.
outbox_event = sa.Table(
    "outbox_event",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("focus_type", sa.String(64), nullable=False),
    sa.Column("focus_id", sa.String(64), nullable=False),
    # The version the event is about: a full-resource notification (and $events) carries
    # that version, whatever happened to the resource since.
    sa.Column("focus_version", sa.Integer, nullable=True),
    sa.Column("focus_deleted", sa.Boolean, nullable=False),  # the event is the deletion
    sa.Column("patient_id", sa.String(64), nullable=True),
    sa.Column("care_plan_id", sa.String(64), nullable=True),
    sa.Column("decision", sa.String(64), nullable=True),
    sa.Column("occurred", sa.DateTime, nullable=False),
    sa.Column("dispatched", sa.Boolean, nullable=False),
    sa.Index(
        "ix_outbox_event_pending",
        "id",
        sqlite_where=sa.text("NOT dispatched"),
        postgresql_where=sa.text("NOT dispatched"),
    ),
    # Ids are never reused (SQLite would reuse those of deleted rows): a subscription counts
    # the events after the last id there was when it was created (subscription_state).
    sqlite_autoincrement=True,
)

# One row per Subscription: what the dispatcher and the workers need without parsing the
# resource, the signing secret (never part of the resource, never read back through the API)
# and the event counter (eventsSinceSubscriptionStart).
subscription_state = sa.Table(
    "subscription_state",
    metadata,
    sa.Column("sub_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),  # of the Subscription resource
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("filters", Body, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("secret", sa.String(255), nullable=False),
    sa.Column("base_url", sa.String(1024), nullable=False),
    sa.Column("heartbeat_seconds", sa.Integer, nullable=True),
    sa.Column("events_since_start", sa.BigInteger, nullable=False),
    # The last outbox event id when it was created: earlier events are not its events.
    sa.Column("start_after", sa.BigInteger, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
)

# Each subscription's delivery: a worker holds its row locked (PostgreSQL, SKIP LOCKED) while
# it sends, so one subscription is served by one worker at a time, in event order.
delivery_state = sa.Table(
    "delivery_state",
    metadata,
    sa.Column("sub_id", sa.String(64), primary_key=True),
    sa.Column("seen_version", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("failing_since", sa.DateTime, nullable=True),
    sa.Column("next_attempt", sa.DateTime, nullable=True),
    sa.Column("heartbeat_due", sa.DateTime, nullable=True),
    sa.Column("last_error", sa.String(255), nullable=True),
)

# The events of each subscription, numbered from 1: what was (or is to be) sent, and $events.
subscription_event = sa.Table(
    "subscription_event",
    metadata,
    sa.Column("sub_id", sa.String(64), primary_key=True),
    sa.Column("event_number", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_id", BigId, sa.ForeignKey("outbox_event.id"), nullable=False, index=True),
    sa.Column("delivered", sa.DateTime, nullable=True),
    sa.Index(
        "ix_subscription_event_pending",
        "sub_id",
        "event_number",
        sqlite_where=sa.text("delivered IS NULL"),
        postgresql_where=sa.text("delivered IS NULL"),
    ),
)

# Time-driven events (a retry window opening or closing): one row per Task and kind, written
# with the Task; the worker that fires it marks it in the same transaction as the event, so it
# fires once across workers and restarts.
event_timer = sa.Table(
    "event_timer",
    metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("due", sa.DateTime, nullable=False),
    sa.Column("fired", sa.DateTime, nullable=True),
    sa.Index(
        "ix_event_timer_due",
        "due",
        sqlite_where=sa.text("fired IS NULL"),
        postgresql_where=sa.text("fired IS NULL"),
    ),
)

# Singleton jobs among workers: the dispatcher (one at a time on PostgreSQL, a row lock), and
# on SQLite the one worker allowed to deliver (a lease with an expiry).
worker_lease = sa.Table(
    "worker_lease",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=True),
    sa.Column("expires", sa.DateTime, nullable=True),
)

# The `jti` of each signed JWT a caller presented, until that JWT expires: a JWT works once
# across every replica (CDS Hooks calls; store/jti.py).
used_jti = sa.Table(
    "used_jti",
    metadata,
    sa.Column("issuer", sa.String(512), primary_key=True),
    sa.Column("jti", sa.String(256), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_used_jti_expires_at", "expires_at"),
)
