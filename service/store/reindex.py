"""Bring every stored resource's search index rows in line with this release's indexer.

Index rows are computed when a resource is written. A release that adds or changes a search
parameter (service/fhir/search_params.py) or the extraction (service/fhir/indexing.py) changes
the rows every stored resource should have, and an update keeps rows that did not change
(Tx._replace), so nothing else would bring them in line. The database records the
fingerprint of the indexer that last did (table index_state); `careplan migrate` and start-up
with CAREPLAN_MIGRATE_ON_START reindex when it differs from this release's.

Reindexing reads the live resources in storage order, a batch per transaction, and rewrites
only the resources whose stored rows differ from the computed ones.
"""

import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from service.fhir.dates import utc_now
from service.fhir.indexing import INDEXER_VERSION, IndexRows, index_rows
from service.fhir.search_params import SEARCH_PARAMS
from service.store.repository import Tx
from service.store.runner import Store
from service.store.tables import INDEX_TABLES, index_state, resource

logger = logging.getLogger("careplan.reindex")

_STATE_NAME = "search-index"
_RESOURCES = (
    sa.select(resource.c.seq, resource.c.body)
    .where(resource.c.seq > sa.bindparam("after_"), resource.c.deleted.is_(False))
    .order_by(resource.c.seq)
    .limit(sa.bindparam("limit_"))
)
# PostgreSQL: a concurrent update of a resource in the batch waits for the batch (SQLite has
# one writer anyway), so its new rows are never overwritten with rows of the old body.
_RESOURCES_LOCKED = _RESOURCES.with_for_update()
# The columns a row is compared on: what index_rows computes (not the row id or the copies of
# the resource's seq and type).
_VALUE_COLUMNS = {
    kind: tuple(c.name for c in table.columns if c.name not in ("id", "resource_seq", "res_type"))
    for kind, table in INDEX_TABLES.items()
}
_STORED_ROWS = {
    kind: sa.select(table.c.resource_seq, *(table.c[name] for name in _VALUE_COLUMNS[kind])).where(
        table.c.resource_seq > sa.bindparam("after_"),
        table.c.resource_seq <= sa.bindparam("last_"),
    )
    for kind, table in INDEX_TABLES.items()
}
_READ_STATE = sa.select(index_state.c.fingerprint).where(index_state.c.name == _STATE_NAME)


def _write_state(dialect: str) -> Any:
    """An upsert: two replicas that start together may both finish a reindex."""
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    stmt = insert(index_state)
    return stmt.on_conflict_do_update(
        index_elements=[index_state.c.name],
        set_={"fingerprint": stmt.excluded.fingerprint, "updated": stmt.excluded.updated},
    )


RowSet = dict[str, list[tuple[Any, ...]]]


@dataclass(frozen=True)
class ReindexReport:
    scanned: int  # live resources read
    rewritten: int  # of them, those whose rows differed


def fingerprint() -> str:
    """What the rows depend on: every search parameter's definition and the indexer's version."""
    definitions = repr(sorted(SEARCH_PARAMS.items()))
    return hashlib.sha256(f"{INDEXER_VERSION}|{definitions}".encode()).hexdigest()


def stored_fingerprint(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return connection.execute(_READ_STATE).scalar()


def is_current(engine: Engine) -> bool:
    return stored_fingerprint(engine) == fingerprint()


def _comparable(rows: IndexRows) -> RowSet:
    return {
        kind: sorted(
            (tuple(row.get(name) for name in _VALUE_COLUMNS[kind]) for row in kind_rows), key=repr
        )
        for kind, kind_rows in rows.items()
        if kind_rows
    }


def _stored_rows(tx: Tx, after: int, last: int) -> dict[int, RowSet]:
    found: dict[int, RowSet] = {}
    for kind, stmt in _STORED_ROWS.items():
        # Through SQLAlchemy, not tx.db: not a hot path, and its result types are complete.
        for seq, *values in tx.conn.execute(stmt, {"after_": after, "last_": last}):
            found.setdefault(seq, {}).setdefault(kind, []).append(tuple(values))
    for row_set in found.values():
        for kind in row_set:
            row_set[kind].sort(key=repr)
    return found


def _reindex_batch(tx: Tx, after: int, limit: int) -> tuple[int, int, int]:
    """(last seq read, resources read, resources rewritten) for the next `limit` resources."""
    stmt = _RESOURCES if tx.sqlite else _RESOURCES_LOCKED
    batch = tx.conn.execute(stmt, {"after_": after, "limit_": limit}).all()
    if not batch:
        return after, 0, 0
    last = batch[-1][0]
    stored = _stored_rows(tx, after, last)
    rewritten = 0
    for seq, body in batch:
        rows = index_rows(body)
        if _comparable(rows) != stored.get(seq, {}):
            tx.rewrite_index(seq, body, rows)
            rewritten += 1
    return last, len(batch), rewritten


def reindex(engine: Engine, batch_size: int = 500) -> ReindexReport:
    """Rewrite the rows that differ from this release's indexer, then record its fingerprint.

    Each batch is one transaction; a resource updated meanwhile gets its rows from that update.
    """
    if batch_size < 1:  # an empty batch would never reach the end
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    store = Store(engine)
    after, scanned, rewritten = 0, 0, 0
    while True:
        unit = functools.partial(_reindex_batch, after=after, limit=batch_size)
        after, read, changed = store.run(unit)
        scanned, rewritten = scanned + read, rewritten + changed
        if read < batch_size:
            break
    state = {
        "name": _STATE_NAME,
        "fingerprint": fingerprint(),
        "updated": utc_now().replace(tzinfo=None),
    }
    with engine.begin() as connection:
        connection.execute(_write_state(engine.dialect.name), state)
    logger.info("reindexed: %d resources read, %d rewritten", scanned, rewritten)
    return ReindexReport(scanned, rewritten)


def reindex_if_stale(engine: Engine) -> ReindexReport | None:
    """Reindex when the rows were built by another indexer (or nothing recorded which)."""
    if is_current(engine):
        return None
    return reindex(engine)
