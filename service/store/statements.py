"""Statements built once: constant SQL with bind parameters, shared by every unit of work.

Building one per call costs more Python than running it, and a reused statement object also
skips SQLAlchemy's cache-key computation.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from service.store import query as q
from service.store.tables import INDEX_TABLES, conditional_key, resource, resource_history

GET = sa.select(*q.STORED_COLUMNS).where(
    resource.c.res_type == sa.bindparam("type_"), resource.c.res_id == sa.bindparam("id_")
)
GET_FOR_UPDATE = GET.with_for_update()
INSERT = resource.insert().returning(resource.c.seq)
HISTORY_COLUMNS = ("res_type", "res_id", "version", "last_updated", "method", "deleted", "body")
# One history row, its parameters named after the columns plus "_" (it also runs as a CTE).
HISTORY = resource_history.insert().values({c: sa.bindparam(f"{c}_") for c in HISTORY_COLUMNS})
HISTORY_ROWS = resource_history.insert()  # the same, for many rows named after the columns
# One version (its columns in the order of repository.HistoryEntry's fields).
VREAD = sa.select(resource_history).where(
    resource_history.c.res_type == sa.bindparam("type_"),
    resource_history.c.res_id == sa.bindparam("id_"),
    resource_history.c.version == sa.bindparam("version_"),
)
INSERT_INDEX = {kind: table.insert() for kind, table in INDEX_TABLES.items()}
# Optimistic: the row is still the version that was read (else someone wrote in between).
UPDATE = (
    resource.update()
    .where(resource.c.seq == sa.bindparam("seq_"), resource.c.version == sa.bindparam("read_"))
    .values(
        version=sa.bindparam("version_"),
        last_updated=sa.bindparam("last_updated_"),
        deleted=sa.bindparam("deleted_"),
        body=sa.bindparam("body_"),
    )
)


# Rows come back in any order, matched by (type, id).
INSERT_MANY = resource.insert().returning(resource.c.seq, resource.c.res_type, resource.c.res_id)


def clear(table: sa.Table) -> sa.Delete:
    return table.delete().where(table.c.resource_seq == sa.bindparam("seq_"))


# What a new version of a resource replaces: its conditional-create key and index rows.
CLEAR = tuple(clear(table) for table in (conditional_key, *INDEX_TABLES.values()))
# PostgreSQL writes the new version's history row and does the clearing in one statement
# (data-modifying CTEs): one round trip instead of seven.
HISTORY_AND_CLEAR_PG = CLEAR[0].add_cte(
    HISTORY.cte("history"), *(clear(t).cte(f"clear_{t.name}") for t in INDEX_TABLES.values())
)
# A new version whose search index rows are the old ones (a decision's CarePlan update): only
# the criteria key goes. Rewriting equal rows touched old leaf pages in every index B-tree.
HISTORY_AND_UNKEY_PG = CLEAR[0].add_cte(HISTORY.cte("history"))

DATES, REFS = INDEX_TABLES["date"], INDEX_TABLES["reference"]


def dated_filter() -> tuple[sa.ColumnElement[bool], ...]:
    """A compartment's dated rows in a window whose resource points at a reference."""
    return (
        DATES.c.res_type == sa.bindparam("type_"),
        DATES.c.param == "date",
        DATES.c.compartment == sa.bindparam("compartment_"),
        DATES.c.high >= sa.bindparam("since_"),
        DATES.c.low <= sa.bindparam("until_"),
        sa.exists().where(
            REFS.c.resource_seq == DATES.c.resource_seq,
            REFS.c.param == sa.bindparam("ref_param_"),
            REFS.c.target_id == sa.bindparam("target_id_"),
            REFS.c.target_type == sa.bindparam("target_type_"),
        ),
    )


def dated_values(
    resource_type: str,
    compartment: str,
    window: tuple[datetime, datetime],
    reference: tuple[str, str],
) -> dict[str, Any]:
    param, target = reference
    target_type, _, target_id = target.partition("/")
    return {
        **window_values(resource_type, compartment, window),
        "ref_param_": param,
        "target_type_": target_type,
        "target_id_": target_id,
    }


def window_values(
    resource_type: str, compartment: str, window: tuple[datetime, datetime]
) -> dict[str, Any]:
    return {
        "type_": resource_type,
        "compartment_": compartment,
        "since_": window[0],
        "until_": window[1],
    }


LATEST_DATED = (
    sa.select(*q.STORED_COLUMNS)
    .join(DATES, DATES.c.resource_seq == resource.c.seq)
    .where(*dated_filter(), resource.c.deleted.is_(False))
    .order_by(DATES.c.high.desc())  # the index order: PostgreSQL stops after `limit` rows
    .limit(sa.bindparam("limit_"))
)
# The seq test comes first, so rows written before `seq` (nearly all) skip the EXISTS probe.
WRITTEN_AFTER = (
    sa.select(sa.literal(1))
    .where(DATES.c.resource_seq > sa.bindparam("seq_"), *dated_filter())
    .limit(1)
)


# Index-only on the covering compartment index, then the live resources in storage order.
WINDOW = (
    sa.select(*q.STORED_COLUMNS)
    .where(
        resource.c.deleted.is_(False),
        resource.c.seq.in_(
            sa.select(DATES.c.resource_seq).where(
                DATES.c.res_type == sa.bindparam("type_"),
                DATES.c.param == sa.bindparam("param_"),
                DATES.c.compartment == sa.bindparam("compartment_"),
                DATES.c.high >= sa.bindparam("since_"),
                DATES.c.low <= sa.bindparam("until_"),
            )
        ),
    )
    .order_by(resource.c.seq)
)
