"""Statements compiled once per dialect and run straight on the DB-API cursor.

The store's hot statements are built once (module constants, or one per search shape in
query.py), yet SQLAlchemy's `Connection.execute` still spends 40-60 µs of Python on each run:
an execution context, parameter construction, result metadata, event dispatch. A session
submission runs about 35 statements, so that is a quarter of its time. Here a statement's
SQL text, parameter order, default values and SQLAlchemy's own type processors are taken from
one compilation, and each run only converts values and calls the driver.

Statements it cannot run the same way as SQLAlchemy (literal-rendered parameters, Python-side
column defaults, escaped bind names) are marked unprepared and go through `Connection.execute`.
Errors are raised as SQLAlchemy's exception classes, so callers see no difference.
"""

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from psycopg import RawCursor
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler

_REQUIRED = object()
# The caches are bounded by the SQL text they hold, not only by entries: a compiled statement
# costs about 30 bytes per character of its SQL (measured: a 16-clause search shape's page
# and count statements, ~5,000 characters, held ~140 KB), and 14 distinct large shapes once
# grew the process by 250 MB. Statements longer than _MAX_CACHED_CHARS (rare by
# construction) are compiled each time they run.
_CACHE_CHARS = 1_000_000
_MAX_CACHED_CHARS = 32_000
_CHUNK = 64  # rows per multi-row INSERT (PostgreSQL allows 65,535 parameters)
Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class Prepared:
    sql: str
    # (bind name, parameter key, list index or None, default or _REQUIRED, bind processor or
    # None), in the order of a positional paramstyle; named paramstyles use the names. An
    # expanding parameter ("code IN :codes") has one bind per list item, so a statement is
    # prepared once per list length.
    binds: tuple[tuple[str, str, int | None, Any, Processor | None], ...]
    positional: bool
    results: tuple[Processor | None, ...]
    # PostgreSQL: the SQL has the server's own $n placeholders and runs on a psycopg
    # RawCursor, which sends it as is. psycopg parses %(name)s queries in Python on every
    # run when they are long or have many parameters (multi-row INSERTs): 5% of a submission.
    native: bool = False


T = TypeVar("T")
S = TypeVar("S", bound=sa.Executable)


class _Cache(dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]]):
    """Keyed by the ids of a statement and dialect. Each entry holds those objects and is
    used only when they are the very ones asked about: a freed object's id can be reused, and
    a statement compiled for an engine that is gone must not serve a new engine (of another
    database) that happens to get the same id. Statements are few (constants and search
    shapes), and so are list lengths; `chars` is the SQL text its entries hold."""

    chars = 0

    def clear(self) -> None:
        super().clear()
        self.chars = 0


_compiled = _Cache()
_prepared = _Cache()
_multi_rows = _Cache()


def _memo(
    cache: _Cache,
    key: tuple[Any, ...],
    owners: tuple[Any, ...],
    build: Callable[[], T],
    chars: Callable[[T], int] = lambda _value: 0,
) -> T:
    """`build()`, kept in `cache` unless its SQL (`chars`) is too long or `owners[0]` is a
    statement built for one call (`one_off`). A cache whose SQL would exceed _CACHE_CHARS
    starts over (the hot statements come back at once)."""
    hit = cache.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], owners, strict=True)):
        return hit[1]  # type: ignore[no-any-return]
    value = build()
    size = chars(value)
    if size > _MAX_CACHED_CHARS or not _cacheable(owners[0]):
        return value
    if cache.chars + size > _CACHE_CHARS:
        cache.clear()
    cache[key] = (owners, value)
    cache.chars += size
    return value


# The execution option that marks a statement built for one call (`one_off`).
_ONE_OFF = "careplan_one_off"


def one_off(stmt: S) -> S:
    """`stmt` marked as built for one call: the caches here do not keep it (its id would
    only ever be asked about once)."""
    return stmt.execution_options(**{_ONE_OFF: True})


def _cacheable(stmt: Any) -> bool:
    options = getattr(stmt, "_execution_options", None)
    return options is None or not options.get(_ONE_OFF, False)


def _compile(stmt: Any, dialect: Dialect, keys: tuple[str, ...]) -> SQLCompiler | None:
    """The statement compiled for `dialect`, or None when only SQLAlchemy can run it."""
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys) if keys else None)
    assert isinstance(compiled, SQLCompiler)
    runnable = not (
        compiled.literal_execute_params
        or compiled.escaped_bind_names
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or any(bind.callable is not None for bind in compiled.bind_names)
    )
    return compiled if runnable else None


def _prepare(compiled: SQLCompiler, dialect: Dialect, lengths: dict[str, int]) -> Prepared:
    defaults = {
        name: (bind.key, _REQUIRED if bind.required else bind.value)
        for bind, name in compiled.bind_names.items()
    }
    sql = compiled.string
    order: Sequence[str] | None = compiled.positiontup
    processors = cast(Mapping[str, Processor], compiled._bind_processors)
    items: dict[str, tuple[str, int]] = {}  # an expanded bind -> (its list parameter, index)
    expanding = {compiled.bind_names[bind] for bind in compiled.post_compile_params}
    if lengths:
        # What SQLAlchemy does per execution: one placeholder per item (and its own form of
        # an empty list); the values themselves do not change the SQL.
        expanded = compiled._process_parameters_for_postcompile(
            {key: [None] * n for key, n in lengths.items()}, _populate_self=False
        )
        sql, order = expanded.statement, expanded.positiontup
        processors = {**processors, **cast(Mapping[str, Processor], expanded.processors)}
        for name, item_names in expanded.parameter_expansion.items():
            items |= {item: (defaults[name][0], i) for i, item in enumerate(item_names)}
    names = order if compiled.positional else [*defaults, *items]
    binds: list[tuple[str, str, int | None, Any, Processor | None]] = []
    for name in names or ():
        if name in items:
            key, index = items[name]
            binds.append((name, key, index, _REQUIRED, processors.get(name)))
        elif name in defaults and name not in expanding:
            key, default = defaults[name]
            binds.append((name, key, None, default, processors.get(name)))
    results = tuple(
        column.type._cached_result_processor(dialect, None) for column in compiled._result_columns
    )
    if dialect.name == "postgresql" and not compiled.positional:
        native = _native_placeholders(sql, binds)
        if native is not None:
            return Prepared(native[0], native[1], True, results, native=True)
    return Prepared(sql, tuple(binds), compiled.positional, results)


_PYFORMAT = re.compile(r"%\((\w+)\)s|%%")


def _native_placeholders(
    sql: str, binds: list[tuple[str, str, int | None, Any, Processor | None]]
) -> tuple[str, tuple[tuple[str, str, int | None, Any, Processor | None], ...]] | None:
    """pyformat SQL with $n placeholders instead (one per distinct name, numbered by first
    use, %% unescaped), and its binds in $n order; None if a name has no bind."""
    by_name = {bind[0]: bind for bind in binds}
    numbers: dict[str, int] = {}

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        return f"${numbers.setdefault(name, len(numbers) + 1)}"

    native = _PYFORMAT.sub(placeholder, sql)
    if any(name not in by_name for name in numbers):
        return None
    return native, tuple(by_name[name] for name in numbers)


def prepared(stmt: Any, dialect: Dialect, params: Mapping[str, Any]) -> Prepared | None:
    """`stmt` ready to run with `params` on the DB-API cursor, or None (SQLAlchemy runs it)."""
    keys = _insert_keys(stmt, params)
    owners = (stmt, dialect)
    key: tuple[Any, ...] = (id(dialect), id(stmt), keys)
    compiled = _memo(
        _compiled,
        key,
        owners,
        lambda: _compile(stmt, dialect, keys),
        lambda c: 0 if c is None else len(c.string),
    )
    if compiled is None:
        return None
    lengths = {bind.key: len(params.get(bind.key) or ()) for bind in compiled.post_compile_params}
    key = (*key, tuple(lengths.values()))
    return _memo(
        _prepared, key, owners, lambda: _prepare(compiled, dialect, lengths), lambda p: len(p.sql)
    )


def _values(p: Prepared, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
    converted = []
    for _name, key, index, default, process in p.binds:
        value = params.get(key, default)
        if index is not None:
            value = value[index]
        elif value is _REQUIRED:
            raise sa.exc.ArgumentError(f"A value is required for bind parameter {key!r}")
        converted.append(process(value) if process is not None else value)
    if p.positional:
        return converted
    return {name: value for (name, *_), value in zip(p.binds, converted, strict=True)}


def _row(p: Prepared, raw: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(
        process(value) if process is not None else value
        for process, value in zip(p.results, raw, strict=True)
    )


_BEGIN = Prepared("BEGIN", (), True, (), native=True)
_COMMIT = Prepared("COMMIT", (), True, (), native=True)
Deferred = tuple[Prepared, Any, Callable[[int], None] | None]


class Runner:
    """Runs statements inside a `Connection`'s open transaction, on its DB-API connection.

    With `begin` (PostgreSQL, a connection in autocommit mode) the runner opens and ends the
    transaction itself: BEGIN goes with the first statement sent and COMMIT with the last
    writes (`commit`), where psycopg would wait for each on its own (two round trips).
    """

    def __init__(self, conn: Connection, *, begin: bool = False) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self._pipelined = False
        # PostgreSQL: writes of `pipelined` blocks not sent yet, with the check (if any) of
        # their rowcount. They go with the next statement whose answer is needed, or `flush`.
        self._deferred: list[Deferred] = []
        dbapi_connection = conn.connection.dbapi_connection
        self._can_defer = self.dialect.name != "sqlite" and hasattr(dbapi_connection, "pipeline")
        self._begin = begin and self._can_defer
        self._in_transaction = False  # BEGIN sent, COMMIT not yet
        if self._begin:
            self._deferred.append((_BEGIN, (), None))

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """Writes whose results nobody reads (`write`, `many`). On PostgreSQL they are not
        sent at once but with the next statement whose answer the transaction waits for (a
        read, a RETURNING insert, `flush` before COMMIT), in one pipeline: no round trip of
        their own. Their errors (and a failed rowcount check) surface there. SQLite runs
        in-process: each statement runs at once, so nothing ever waits there.
        """
        if self._pipelined:
            yield
            return
        self._pipelined = True  # on SQLite too, so a misuse fails in every test run
        try:
            yield
        finally:
            self._pipelined = False

    def write(
        self, stmt: Any, params: Mapping[str, Any], check: Callable[[int], None] | None = None
    ) -> None:
        """A statement whose rows are not needed; `check` gets its rowcount once it ran."""
        if self._pipelined and self._can_defer:
            p = prepared(stmt, self.dialect, params)
            if p is not None:
                self._deferred.append((p, _values(p, params), check))
                return
        _, rowcount = self.execute(stmt, params)
        if check is not None:
            check(rowcount)

    def flush(self) -> None:
        """Send the deferred writes now (before COMMIT, or before SQLAlchemy runs a statement)."""
        if self._deferred:
            self._send([])

    def commit(self) -> None:
        """With `begin`: the deferred writes and COMMIT, in one round trip (none for a unit
        that sent nothing). Without: the deferred writes; the caller commits.

        A write with a rowcount check goes before COMMIT on a round trip of its own: the check
        runs when the answer arrives, and a COMMIT sent along would not wait for its verdict.
        """
        if not self._begin:
            self.flush()
            return
        if any(check is not None for _, _, check in self._deferred):
            self.flush()
        if self._in_transaction or len(self._deferred) > 1:
            self._deferred.append((_COMMIT, (), None))
            self._send([])
            self._in_transaction = False
        self._deferred.clear()

    def rows(self, stmt: Any, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """All result rows, as tuples in the statement's column order."""
        assert not self._pipelined, "rows are not read inside a pipelined block"
        return self.execute(stmt, params)[0]

    def rows_together(
        self, requests: Sequence[tuple[Any, Mapping[str, Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        """`rows` of independent reads, sent together with the deferred writes on PostgreSQL
        (pipeline mode: the server gets them all before the first answer is awaited, so one
        round trip instead of one each); one after the other on SQLite, which runs in-process."""
        assert not self._pipelined, "rows are not read inside a pipelined block"
        ready = [(prepared(stmt, self.dialect, params), params) for stmt, params in requests]
        if not self._can_defer or any(p is None for p, _ in ready):
            return [self.execute(stmt, params)[0] for stmt, params in requests]
        found = self._send([(p, _values(p, params)) for p, params in ready if p is not None])
        return [rows for rows, _ in found]

    def _send(self, reads: list[tuple[Prepared, Any]]) -> list[tuple[list[tuple[Any, ...]], int]]:
        """The deferred writes, then `reads`, in one pipeline: the reads' rows and rowcounts."""
        deferred, self._deferred = self._deferred, []
        dbapi_connection = self.conn.connection.dbapi_connection
        sent: list[tuple[Prepared, Any, Callable[[int], None] | None]] = []
        cursors: list[tuple[Prepared, Any]] = []
        try:
            with dbapi_connection.pipeline():  # type: ignore[union-attr]
                for p, values, check in deferred:
                    cursor = self._cursor(p)
                    sent.append((p, cursor, check))
                    cursor.execute(p.sql, values)
                    if p is _BEGIN:
                        self._in_transaction = True
                for p, values in reads:
                    cursor = self._cursor(p)
                    cursors.append((p, cursor))
                    cursor.execute(p.sql, values)
            # The block's end sent the lot and waited once; each cursor holds its rows now
            # (a fetch inside the block would wait for a sync of its own: one more trip).
            for _, cursor, check in sent:
                if check is not None:
                    check(cursor.rowcount)
            return [
                ([_row(p, r) for r in cursor.fetchall()] if p.results else [], cursor.rowcount)
                for p, cursor in cursors
            ]
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._wrapped(exc, "(pipeline)", (), None) from exc
        finally:
            for _, cursor, _ in sent:
                cursor.close()
            for _, cursor in cursors:
                cursor.close()

    def execute(self, stmt: Any, params: Mapping[str, Any]) -> tuple[list[tuple[Any, ...]], int]:
        """(rows, rowcount); rows is empty for a statement that returns none."""
        p = prepared(stmt, self.dialect, params)
        if p is not None and self._deferred:
            return self._send([(p, _values(p, params))])[0]  # with the deferred writes
        self.flush()
        if p is None:
            result = self.conn.execute(stmt, dict(params))
            rows = [tuple(r) for r in result] if result.returns_rows else []
            return rows, result.rowcount
        values = _values(p, params)
        cursor = self._cursor(p)
        try:
            cursor.execute(p.sql, values)
            # p.results, not cursor.description: psycopg builds a Column object per column
            # on every access to description (6% of a PostgreSQL submission).
            raw = cursor.fetchall() if p.results else []
            return [_row(p, r) for r in raw], cursor.rowcount
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._wrapped(exc, p.sql, values, cursor) from exc
        finally:
            cursor.close()

    def inserted(self, stmt: sa.Insert, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """INSERT `rows` as multi-row statements of up to _CHUNK rows each (as SQLAlchemy's
        "insertmanyvalues" does): what `stmt` returns for each row, in no particular order."""
        returned = []
        for chunk, params in _chunks(stmt, rows):
            returned += self.execute(chunk, params)[0]
        return returned

    def many(self, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """One statement for many parameter sets (no results), as `executemany`.

        SQLite's executemany is a loop in C; over a network it is a round trip per row (the
        psycopg pipeline still waits on each), so there a plain INSERT goes as `inserted`.
        """
        if not rows:
            return
        if self._pipelined and self._can_defer:
            if not _insert_keys(stmt, rows[0]):
                for row in rows:
                    self.write(stmt, row)
                return
            for chunk, params in _chunks(stmt, rows):
                self.write(chunk, params)
            return
        self.flush()
        if _insert_keys(stmt, rows[0]) and self.dialect.name != "sqlite":
            self.inserted(stmt, rows)
            return
        p = prepared(stmt, self.dialect, rows[0])
        if p is None:
            self.conn.execute(stmt, [dict(r) for r in rows])
            return
        values = [_values(p, r) for r in rows]
        cursor = self._cursor(p)
        try:
            cursor.executemany(p.sql, values)
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._wrapped(exc, p.sql, values, cursor) from exc
        finally:
            cursor.close()

    def _cursor(self, p: Prepared) -> Any:
        dbapi_connection = self.conn.connection.dbapi_connection
        if p.native:
            return RawCursor(cast(Any, dbapi_connection))
        return dbapi_connection.cursor()  # type: ignore[union-attr]

    def _wrapped(self, exc: Exception, sql: str, values: Any, cursor: Any) -> sa.exc.DBAPIError:
        """The SQLAlchemy exception `Connection.execute` would raise (IntegrityError, ...);
        a lost connection is invalidated, so the pool does not hand it out again."""
        dbapi_connection = self.conn.connection.dbapi_connection
        lost = self.dialect.is_disconnect(exc, dbapi_connection, cursor)  # type: ignore[arg-type]
        if lost:
            self.conn.invalidate(exc)
        return sa.exc.DBAPIError.instance(  # type: ignore[return-value]
            sql,
            values,
            exc,
            self.dialect.loaded_dbapi.Error,
            hide_parameters=True,
            dialect=self.dialect,
            connection_invalidated=lost,
        )


def _chunks(
    stmt: sa.Insert, rows: Sequence[Mapping[str, Any]]
) -> Iterator[tuple[sa.Insert, dict[str, Any]]]:
    """`rows` as multi-row INSERTs of up to _CHUNK rows each, with their parameters."""
    keys = _insert_keys(stmt, rows[0]) if rows else ()
    assert keys or not rows, "a multi-row INSERT is built from an INSERT without VALUES"
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        params = {f"{k}_{i}": row[k] for i, row in enumerate(chunk) for k in keys}
        yield _multi_row(stmt, keys, len(chunk)), params


def _multi_row(stmt: sa.Insert, keys: tuple[str, ...], count: int) -> sa.Insert:
    """`stmt` (its table and RETURNING) as one INSERT of `count` rows, parameters named
    <key>_<row>."""

    def build() -> sa.Insert:
        columns = stmt.table.c
        return stmt.values(
            [
                {k: sa.bindparam(f"{k}_{i}", type_=columns[k].type) for k in keys}
                for i in range(count)
            ]
        )

    return _memo(_multi_rows, (id(stmt), keys, count), (stmt,), build)


def _insert_keys(stmt: Any, params: Mapping[str, Any]) -> tuple[str, ...]:
    """An INSERT without explicit VALUES compiles to the columns it is given; others do not
    depend on the parameters."""
    if isinstance(stmt, sa.Insert) and not stmt._values and not stmt._multi_values:
        return tuple(params)
    return ()
