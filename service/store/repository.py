"""The repository: every read and write of FHIR resources inside one unit of work (``Tx``),
and the values it hands back. ``runner.Store`` opens the transaction a unit runs in."""

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.fhir.dates import format_instant, utc_now
from service.fhir.ids import new_resource_id
from service.fhir.indexing import IndexRows, index_rows
from service.fhir.search import SearchQuery, parse_search
from service.store import query as q
from service.store import statements as st
from service.store.db import is_sqlite
from service.store.engine.prepared import Runner
from service.store.errors import (
    Gone,
    InvalidQuery,
    NotFound,
    PreconditionFailed,
    RetryTransaction,
)
from service.store.tables import conditional_key, idx_reference, resource, resource_history

T = TypeVar("T")
# Resources one search page may add by _revinclude (a patient's decisions over months).
REVINCLUDE_LIMIT = 1000


@dataclass(frozen=True)
class Stored:
    seq: int
    type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    body: dict[str, Any] | None

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass(frozen=True)
class HistoryEntry:
    seq: int
    type: str
    id: str
    version: int
    last_updated: datetime
    method: str
    deleted: bool
    body: dict[str, Any] | None


@dataclass
class SearchPage:
    matches: list[Stored]
    included: list[Stored]
    total: int | None
    next_cursor: str | None
    previous_cursor: str | None


@dataclass(frozen=True)
class Read(Generic[T]):
    """A read to run with others in one go (`Tx.together`): one round trip on PostgreSQL."""

    stmt: Any
    params: Mapping[str, Any]
    convert: Callable[[list[tuple[Any, ...]]], T]


def live(found: Stored | None, resource_type: str, resource_id: str) -> Stored:
    """What `get` found, as `read` answers it: 404 if nothing, 410 if deleted."""
    if found is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    if found.deleted:
        raise Gone(f"{resource_type}/{resource_id} has been deleted")
    return found


def criteria_key(query: SearchQuery) -> str:
    """The conditional-create key of a search: what it matches, not how it is written.

    Result parameters (_count, _sort, _summary, ...) are not clauses; the clauses are
    AND-ed and each one's values OR-ed, so both are de-duplicated and ordered. Two criteria
    that find the same resources then share one key, and parallel creates with them collide
    on it instead of each creating its own resource.
    """
    clauses = sorted(
        {(c.param.name, c.modifier or "", tuple(sorted(set(c.values)))) for c in query.clauses}
    )
    text = orjson.dumps([query.resource_type, clauses])
    return hashlib.sha256(text).hexdigest()


def _one_row_updated(rowcount: int) -> None:
    if rowcount != 1:
        raise RetryTransaction()  # someone else wrote in between: decide again from scratch


class Tx:
    """Operations inside one open transaction."""

    def __init__(self, conn: Connection, *, begin: bool = False) -> None:
        self._conn = conn
        self.sqlite = is_sqlite(conn.engine)
        self.after_commit: list[Callable[[], None]] = []
        self.db = Runner(conn, begin=begin)

    @property
    def conn(self) -> Connection:
        """The transaction's connection for SQLAlchemy statements, with every deferred write
        sent first (`Runner.pipelined`), so they see them."""
        self.db.flush()
        return self._conn

    def flush(self) -> None:
        """Send the deferred writes: before COMMIT, which must not go without them."""
        self.db.flush()

    def commit(self) -> None:
        """Opened with `begin`: the deferred writes and COMMIT (see prepared.Runner)."""
        self.db.commit()

    # --- reads -----------------------------------------------------------------------------

    def get(self, resource_type: str, resource_id: str, *, lock: bool = False) -> Stored | None:
        stmt = st.GET_FOR_UPDATE if lock and not self.sqlite else st.GET
        return _first_stored(self.db.rows(stmt, {"type_": resource_type, "id_": resource_id}))

    def get_read(self, resource_type: str, resource_id: str) -> Read["Stored | None"]:
        """`get` (without a lock) as a Read."""
        return Read(st.GET, {"type_": resource_type, "id_": resource_id}, _first_stored)

    def read(self, resource_type: str, resource_id: str, *, lock: bool = False) -> Stored:
        return live(self.get(resource_type, resource_id, lock=lock), resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version: int) -> HistoryEntry:
        params = {"type_": resource_type, "id_": resource_id, "version_": version}
        rows = self.db.rows(st.VREAD, params)  # prepared: a BEGIN goes with it
        if not rows:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version}")
        entry = HistoryEntry(*rows[0])
        if entry.deleted:
            raise Gone(f"Version {version} of {resource_type}/{resource_id} is a deletion")
        return entry

    def first_stored(self, resource_type: str, resource_id: str) -> datetime | None:
        """When the resource's first version was stored (naive UTC), from its history."""
        found = self.conn.execute(
            sa.select(resource_history.c.last_updated)
            .where(
                resource_history.c.res_type == resource_type,
                resource_history.c.res_id == resource_id,
            )
            .order_by(resource_history.c.version)
            .limit(1)
        ).scalar()
        return found if isinstance(found, datetime) else None

    def read_many(self, refs: list[tuple[str, str]]) -> list[Stored]:
        if not refs:
            return []
        pairs = [sa.and_(resource.c.res_type == t, resource.c.res_id == i) for t, i in refs]
        rows = self.conn.execute(
            sa.select(*q.STORED_COLUMNS).where(sa.or_(*pairs), resource.c.deleted.is_(False))
        ).all()
        return [_stored(r) for r in rows]

    # --- writes ----------------------------------------------------------------------------

    def create_many(self, bodies: list[tuple[dict[str, Any], str]]) -> list[Stored]:
        """Create several new resources (body, id) with one statement per table.

        A session is ten or so resources; batching them saves most of the per-statement cost.
        """
        if not bodies:
            return []
        now = utc_now().replace(tzinfo=None)
        finals = [_with_meta(body, rid, 1, now) for body, rid in bodies]
        rows = [
            {
                "res_type": f["resourceType"],
                "res_id": f["id"],
                "version": 1,
                "last_updated": now,
                "deleted": False,
                "body": f,
            }
            for f in finals
        ]
        returned = {(t, i): seq for seq, t, i in self.db.inserted(st.INSERT_MANY, rows)}
        seqs = [returned[(f["resourceType"], f["id"])] for f in finals]
        history = [{**row, "method": "POST"} for row in rows]  # each row, plus the method
        index: dict[str, list[dict[str, Any]]] = {}
        for seq, final in zip(seqs, finals, strict=True):
            for kind, kind_rows in index_rows(final).items():
                index.setdefault(kind, []).extend(
                    {"resource_seq": seq, "res_type": final["resourceType"], **r} for r in kind_rows
                )
        with self.db.pipelined():
            self.db.many(st.HISTORY_ROWS, history)
            for kind, kind_rows in index.items():
                self.db.many(st.INSERT_INDEX[kind], kind_rows)
        return [
            Stored(seq, f["resourceType"], f["id"], 1, now, False, f)
            for seq, f in zip(seqs, finals, strict=True)
        ]

    def create(self, body: dict[str, Any], resource_id: str | None = None) -> Stored:
        resource_type = body["resourceType"]
        new_id = resource_id or new_resource_id()
        return self._insert(resource_type, new_id, 1, body, "POST")

    def create_conditional(
        self,
        body: dict[str, Any],
        criteria: SearchQuery,
        resource_id: str | None = None,
    ) -> tuple[Stored, bool]:
        """If-None-Exist: the match when there is exactly one, else a new resource.

        A unique key on the normalized criteria (`criteria_key`) makes equivalent parallel
        creates race-free: the loser's insert fails and its retry finds the winner's resource.
        """
        matches = self.search_ids(criteria, limit=2)
        if len(matches) > 1:
            raise PreconditionFailed(
                "If-None-Exist matches more than one resource; be more specific", ambiguous=True
            )
        if matches:
            return self.read(criteria.resource_type, matches[0]), False
        created = self.create(body, resource_id)
        key = criteria_key(criteria)
        existing = self.conn.execute(
            sa.select(conditional_key.c.resource_seq).where(
                conditional_key.c.res_type == criteria.resource_type,
                conditional_key.c.criteria == key,
            )
        ).first()
        if existing is not None:
            holder = existing.resource_seq
            where = q.where(criteria)
            still_matches = self.conn.execute(
                sa.select(resource.c.seq).where(*where.conditions, resource.c.seq == holder),
                where.params,
            ).first()
            if still_matches is not None:
                # A parallel create committed after our search: redo, and find its resource.
                raise RetryTransaction()
            # The resource it pointed at no longer matches: the key is stale, take it over
            # (compare-and-set, so two takers cannot both win).
            result = self.conn.execute(
                conditional_key.update()
                .where(
                    conditional_key.c.res_type == criteria.resource_type,
                    conditional_key.c.criteria == key,
                    conditional_key.c.resource_seq == holder,
                )
                .values(resource_seq=created.seq)
            )
            if result.rowcount != 1:
                raise RetryTransaction()
        else:
            self.conn.execute(
                conditional_key.insert().values(
                    res_type=criteria.resource_type, criteria=key, resource_seq=created.seq
                )
            )
        return created, True

    def update(
        self, body: dict[str, Any], resource_id: str, if_match: int | None = None
    ) -> tuple[Stored, bool]:
        """Update (or create with the client's id); returns (stored, created)."""
        resource_type = body["resourceType"]
        current = self.get(resource_type, resource_id, lock=True)
        if current is None:
            if if_match is not None:
                raise PreconditionFailed(f"{resource_type}/{resource_id} does not exist (If-Match)")
            return self._insert(resource_type, resource_id, 1, body, "PUT"), True
        if if_match is not None and if_match != current.version:
            raise PreconditionFailed(
                f'Version conflict: If-Match W/"{if_match}", current W/"{current.version}"'
            )
        return self._replace(current, body, "PUT"), current.deleted

    def replace(self, current: Stored, body: dict[str, Any]) -> Stored:
        """A new version of a resource this transaction read (locked) before: no second read.
        Still optimistic, so a version changed in between makes the unit retry."""
        return self._replace(current, body, "PUT")

    def delete(self, resource_type: str, resource_id: str) -> Stored | None:
        current = self.get(resource_type, resource_id, lock=True)
        if current is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        if current.deleted:
            return None
        return self._replace(current, None, "DELETE")

    def _insert(
        self, resource_type: str, resource_id: str, version: int, body: dict[str, Any], method: str
    ) -> Stored:
        now = utc_now().replace(tzinfo=None)
        final = _with_meta(body, resource_id, version, now)
        row = {
            "res_type": resource_type,
            "res_id": resource_id,
            "version": version,
            "last_updated": now,
            "deleted": False,
            "body": final,
        }
        seq = self.db.rows(st.INSERT, row)[0][0]
        history = _history_params(resource_type, resource_id, version, now, method, final)
        with self.db.pipelined():
            self.db.write(st.HISTORY, history)
            self._write_index(seq, final)
        return Stored(seq, resource_type, resource_id, version, now, False, final)

    def _replace(self, current: Stored, body: dict[str, Any] | None, method: str) -> Stored:
        now = max(utc_now().replace(tzinfo=None), current.last_updated)
        version = current.version + 1
        final = _with_meta(body, current.id, version, now) if body is not None else None
        history = _history_params(current.type, current.id, version, now, method, final)
        rows = index_rows(final) if final is not None else None
        same_rows = (
            rows is not None and current.body is not None and rows == index_rows(current.body)
        )
        update = {
            "seq_": current.seq,
            "read_": current.version,
            "version_": version,
            "last_updated_": now,
            "deleted_": body is None,
            "body_": final,
        }
        with self.db.pipelined():
            # On PostgreSQL the UPDATE waits for the next round trip like the rest, so its
            # check does too: a version changed since `current` was read retries the unit.
            self.db.write(st.UPDATE, update, check=_one_row_updated)
            if self.sqlite:
                self.db.write(st.HISTORY, history)
                # The previous version's criteria key, and its index rows unless they stay.
                for stmt in st.CLEAR[:1] if same_rows else st.CLEAR:
                    self.db.write(stmt, {"seq_": current.seq})
            else:
                statement = st.HISTORY_AND_UNKEY_PG if same_rows else st.HISTORY_AND_CLEAR_PG
                self.db.write(statement, {**history, "seq_": current.seq})
            if not same_rows and final is not None:
                self._write_index(current.seq, final, rows)
        return Stored(current.seq, current.type, current.id, version, now, body is None, final)

    def rewrite_index(self, seq: int, body: dict[str, Any], rows: IndexRows) -> None:
        """Replace a stored resource's search index rows with `rows` (reindex)."""
        with self.db.pipelined():
            for stmt in st.CLEAR[1:]:  # not the conditional-create key: it is no index row
                self.db.write(stmt, {"seq_": seq})
            self._write_index(seq, body, rows)

    def _write_index(
        self, seq: int, body: dict[str, Any] | None, rows: IndexRows | None = None
    ) -> None:
        if body is None:
            return
        resource_type = body["resourceType"]
        for kind, kind_rows in (rows if rows is not None else index_rows(body)).items():
            self.db.many(
                st.INSERT_INDEX[kind],
                [{"resource_seq": seq, "res_type": resource_type, **row} for row in kind_rows],
            )

    # --- search ----------------------------------------------------------------------------

    def search_ids(self, query: SearchQuery, limit: int) -> list[str]:
        where = q.where(query)
        params = {**where.params, q.LIMIT: limit}
        return [row[0] for row in self.db.rows(q.ids_statement(where.shape), params)]

    def find(
        self, resource_type: str, items: list[tuple[str, str]], limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """Bodies matching FHIR search criteria, in the query's sort order (internal use)."""
        return self.run_read(self.find_read(resource_type, items, limit))

    def find_read(
        self, resource_type: str, items: list[tuple[str, str]], limit: int = 10_000
    ) -> Read[list[dict[str, Any]]]:
        """`find` as a Read (no _include, no paging: what the use cases ask)."""
        query = parse_search(resource_type, items, default_count=limit, max_count=limit)
        assert not query.includes and not query.cursor, "find takes plain criteria"
        where = q.where(query)
        stmt = q.page_statement(where.shape, q.sort_key(query))
        return Read(stmt, {**where.params, q.LIMIT: limit}, _bodies)

    def compartment_window_read(
        self,
        resource_type: str,
        compartment: str,
        window: tuple[datetime, datetime],
        param: str = "date",
    ) -> Read[list[dict[str, Any]]]:
        """A patient's resources whose date search parameter `param` overlaps
        [since, until], in storage order: one range scan of the compartment date index, so
        its cost follows the number of matches, not the size of the patient's history."""
        values = {**st.window_values(resource_type, compartment, window), "param_": param}
        return Read(st.WINDOW, values, _bodies)

    def latest_dated_read(
        self,
        resource_type: str,
        compartment: str,
        window: tuple[datetime, datetime],
        reference: tuple[str, str],
        limit: int,
    ) -> Read[list[Stored]]:
        """The newest resources of a patient's compartment by their `date`, within
        [since, until], that point at `reference` (search parameter, "Type/id").

        What a decision needs to find its plan's latest decisions: one backward scan of the
        compartment date index that stops after `limit` matches, so it costs the same for a
        patient with one decision in the window as for one with hundreds (a generic search
        sorted by date reads and sorts every match first).
        """
        values = st.dated_values(resource_type, compartment, window, reference)
        return Read(st.LATEST_DATED, {**values, "limit_": limit}, _stored_rows)

    def run_read(self, read: Read[T]) -> T:
        return read.convert(self.db.rows(read.stmt, read.params))

    def together(self, *reads: Read[Any]) -> list[Any]:
        """Independent reads in one go: one round trip for all of them on PostgreSQL."""
        found = self.db.rows_together([(r.stmt, r.params) for r in reads])
        return [read.convert(rows) for read, rows in zip(reads, found, strict=True)]

    def written_after(
        self,
        resource_type: str,
        compartment: str,
        window: tuple[datetime, datetime],
        reference: tuple[str, str],
        seq: int,
    ) -> bool:
        """Whether a resource of the same kind as `latest_dated_read` finds was stored after the
        one with `seq`: with `seq` the newest by date, one that arrived out of date order."""
        values = st.dated_values(resource_type, compartment, window, reference)
        return bool(self.db.rows(st.WRITTEN_AFTER, {**values, "seq_": seq}))

    def count(self, query: SearchQuery) -> int:
        return self._count(q.where(query))

    def _count(self, where: q.Where) -> int:
        stmt = q.count_statement(where.shape)
        return int(self.db.rows(stmt, where.params)[0][0])

    def search(self, query: SearchQuery) -> SearchPage:
        sort = q.sort_key(query)
        columns = q.columns_for(sort)
        where = q.where(query)
        backwards = False
        if query.cursor:
            values, backwards = q.decode_cursor(query.cursor, columns)
            stmt = q.cursor_page_statement(where, columns, values, backwards)
        else:
            stmt = q.page_statement(where.shape, sort)
        rows = self.db.rows(stmt, {**where.params, q.LIMIT: query.count + 1})
        more = len(rows) > query.count
        rows = rows[: query.count]
        if backwards:
            rows.reverse()
        matches = [_stored(r) for r in rows]
        has_after = more if not backwards else bool(query.cursor)
        has_before = more if backwards else bool(query.cursor)
        # Only the first and last rows' sort keys (k0, k1, ...) make cursors.
        width = len(columns)
        next_cursor = q.encode_cursor(_keys(rows[-1], width), False) if rows and has_after else None
        previous_cursor = (
            q.encode_cursor(_keys(rows[0], width), True) if rows and has_before else None
        )
        total = None if query.total == "none" else self._count(where)
        included = self._includes(query, matches)
        shown = {(m.type, m.id) for m in [*matches, *included]}
        included += [r for r in self._revincludes(query, matches) if (r.type, r.id) not in shown]
        return SearchPage(matches, included, total, next_cursor, previous_cursor)

    def _includes(self, query: SearchQuery, matches: list[Stored]) -> list[Stored]:
        if not query.includes or not matches:
            return []
        wanted = [
            sa.and_(
                idx_reference.c.param == param.name,
                *([idx_reference.c.target_type == target] if target else []),
            )
            for param, target in query.includes
        ]
        rows = self.conn.execute(
            sa.select(idx_reference.c.target_type, idx_reference.c.target_id).where(
                idx_reference.c.resource_seq.in_([m.seq for m in matches]),
                sa.or_(*wanted),
                idx_reference.c.target_id.is_not(None),
            )
        ).all()
        seen = {(m.type, m.id) for m in matches}
        refs = sorted({(r.target_type, r.target_id) for r in rows} - seen)
        return self.read_many(refs)

    def _revincludes(self, query: SearchQuery, matches: list[Stored]) -> list[Stored]:
        """The resources `_revinclude` names whose parameter points at a match: one lookup of
        the reference index by (type, param, target id). More than REVINCLUDE_LIMIT for one
        page is refused rather than cut short: a client would take a part for the whole."""
        if not query.revincludes or not matches:
            return []
        wanted = [
            sa.and_(idx_reference.c.res_type == source, idx_reference.c.param == param.name)
            for source, param in query.revincludes
        ]
        pointing = sa.select(idx_reference.c.resource_seq).where(
            sa.or_(*wanted),
            idx_reference.c.target_type == query.resource_type,
            idx_reference.c.target_id.in_(sorted({m.id for m in matches})),
        )
        rows = self.conn.execute(
            sa.select(*q.STORED_COLUMNS)
            .where(resource.c.seq.in_(pointing), resource.c.deleted.is_(False))
            .order_by(resource.c.seq)
            .limit(REVINCLUDE_LIMIT + 1)
        ).all()
        if len(rows) > REVINCLUDE_LIMIT:
            raise InvalidQuery(
                f"_revinclude finds more than {REVINCLUDE_LIMIT} resources for this page: use a "
                "smaller _count, or search the other type by its parameter (e.g. "
                "GuidanceResponse?result=CarePlan/<id>) and page through it"
            )
        return [_stored(r) for r in rows]

    # --- history ---------------------------------------------------------------------------

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        since: datetime | None,
        count: int,
        before_seq: int | None,
    ) -> tuple[list[HistoryEntry], int | None, int]:
        """Newest first; returns (entries, cursor for the next page, total)."""
        where = []
        if resource_type:
            where.append(resource_history.c.res_type == resource_type)
        if resource_id:
            where.append(resource_history.c.res_id == resource_id)
        if since:
            where.append(resource_history.c.last_updated >= since)
        total = int(
            self.conn.execute(
                sa.select(sa.func.count()).select_from(resource_history).where(*where)
            ).scalar_one()
        )
        if before_seq is not None:
            where.append(resource_history.c.seq < before_seq)
        rows = self.conn.execute(
            sa.select(resource_history)
            .where(*where)
            .order_by(resource_history.c.seq.desc())
            .limit(count + 1)
        ).all()
        entries = [_history(r) for r in rows[:count]]
        next_seq = entries[-1].seq if len(rows) > count and entries else None
        return entries, next_seq, total


_STORED_WIDTH = len(q.STORED_COLUMNS)


def _history_params(
    resource_type: str,
    resource_id: str,
    version: int,
    now: datetime,
    method: str,
    body: dict[str, Any] | None,
) -> dict[str, Any]:
    """The parameters of st.HISTORY."""
    return {
        "res_type_": resource_type,
        "res_id_": resource_id,
        "version_": version,
        "last_updated_": now,
        "method_": method,
        "deleted_": body is None,
        "body_": body,
    }


def _with_meta(
    body: dict[str, Any], resource_id: str, version: int, now: datetime
) -> dict[str, Any]:
    meta = dict(body.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(now)
    return {**body, "id": resource_id, "meta": meta}


def _bodies(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The bodies of rows that start with q.STORED_COLUMNS (deleted ones have none)."""
    return [body for body in (_stored(row).body for row in rows) if body is not None]


def _first_stored(rows: list[tuple[Any, ...]]) -> Stored | None:
    return _stored(rows[0]) if rows else None


def _stored_rows(rows: list[tuple[Any, ...]]) -> list[Stored]:
    return [_stored(row) for row in rows]


def _stored(row: Any) -> Stored:
    """A row that starts with q.STORED_COLUMNS (search rows have sort keys after them)."""
    return Stored(*row[:_STORED_WIDTH])


def _keys(row: tuple[Any, ...], width: int) -> list[Any]:
    """A search row's sort key values (k0, k1, ... after the stored columns)."""
    return list(row[_STORED_WIDTH : _STORED_WIDTH + width])


def _history(row: Any) -> HistoryEntry:
    return HistoryEntry(
        row.seq,
        row.res_type,
        row.res_id,
        row.version,
        row.last_updated,
        row.method,
        row.deleted,
        row.body,
    )
