"""The prepared-statement runner must behave exactly like `Connection.execute`: the same rows
with the same Python types, the same rowcounts, the same exception classes, and a fallback
for statements it cannot prepare. Run on both databases."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from service.store import query as q
from service.store.db import create_db_engine
from service.store.engine import prepared
from service.store.engine.prepared import Runner
from service.store.repository import Tx
from service.store.tables import idx_token, resource

WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456)
BODY = {"resourceType": "Basic", "id": "x", "code": {"text": 'ü "quoted" ✓'}, "n": [1, 2.5]}

_BY_TYPE_ID = sa.select(*q.STORED_COLUMNS).where(
    resource.c.res_type == sa.bindparam("type_"), resource.c.res_id == sa.bindparam("id_")
)
_RENAME = (
    resource.update()
    .where(resource.c.res_id == sa.bindparam("old_"))
    .values(res_id=sa.bindparam("new_"))
)
_INSERT = resource.insert()
_PG_LIKE = "postgresql+psycopg://unused@127.0.0.1:1/unused"  # a dialect only, never connected


@pytest.fixture
def connection(database_url: str) -> Iterator[sa.Connection]:
    engine = create_db_engine(database_url)
    with engine.connect() as conn, conn.begin() as transaction:
        yield conn
        transaction.rollback()
    engine.dispose()


def _row(res_id: str, body: Any = BODY, deleted: bool = False) -> dict[str, Any]:
    return {
        "res_type": "Basic",
        "res_id": res_id,
        "version": 3,
        "last_updated": WHEN,
        "deleted": deleted,
        "body": body,
    }


def test_rows_equal_what_sqlalchemy_returns(connection: sa.Connection) -> None:
    runner = Runner(connection)
    runner.many(_INSERT, [_row("a"), _row("b", None, deleted=True)])
    for res_id in ("a", "b", "missing"):
        params = {"type_": "Basic", "id_": res_id}
        expected = [tuple(r) for r in connection.execute(_BY_TYPE_ID, params)]
        assert runner.rows(_BY_TYPE_ID, params) == expected
    (seq, res_type, res_id, version, last_updated, deleted, body) = runner.rows(
        _BY_TYPE_ID, {"type_": "Basic", "id_": "a"}
    )[0]
    # Types as SQLAlchemy converts them on both databases (SQLite stores text and integers).
    assert (res_type, res_id, version) == ("Basic", "a", 3)
    assert isinstance(seq, int) and last_updated == WHEN and deleted is False and body == BODY
    assert runner.rows(_BY_TYPE_ID, {"type_": "Basic", "id_": "b"})[0][5:] == (True, None)


def test_rowcount_and_literal_defaults(connection: sa.Connection) -> None:
    runner = Runner(connection)
    runner.execute(_INSERT, _row("c"))
    assert runner.execute(_RENAME, {"old_": "c", "new_": "d"})[1] == 1
    assert runner.execute(_RENAME, {"old_": "c", "new_": "e"})[1] == 0
    # A literal in the statement (param == "date", deleted IS false) is bound from the
    # statement itself, not from the caller's parameters.
    live = sa.select(resource.c.res_id).where(
        resource.c.res_type == "Basic", resource.c.deleted.is_(False)
    )
    assert runner.rows(live, {}) == [("d",)]


def test_a_missing_parameter_is_refused_before_the_database_sees_it(
    connection: sa.Connection,
) -> None:
    with pytest.raises(sa.exc.ArgumentError, match="id_"):
        Runner(connection).rows(_BY_TYPE_ID, {"type_": "Basic"})


def test_driver_errors_are_sqlalchemy_exceptions(connection: sa.Connection) -> None:
    """Store.run retries on IntegrityError: the class must survive the bypass."""
    runner = Runner(connection)
    runner.execute(_INSERT, _row("dup"))
    with pytest.raises(IntegrityError), connection.begin_nested():
        runner.execute(_INSERT, _row("dup"))
    with pytest.raises(IntegrityError), connection.begin_nested():
        runner.many(_INSERT, [_row("dup2"), _row("dup2")])


def test_many_rows_beyond_one_multi_row_insert(connection: sa.Connection) -> None:
    runner = Runner(connection)
    seq = runner.execute(_INSERT.returning(resource.c.seq), _row("owner"))[0][0][0]
    rows = [
        {"resource_seq": seq, "res_type": "Basic", "param": "code", "system": None, "code": str(i)}
        for i in range(prepared._CHUNK * 2 + 3)
    ]
    runner.many(idx_token.insert(), rows)
    stored = connection.execute(
        sa.select(idx_token.c.code).where(idx_token.c.resource_seq == seq)
    ).scalars()
    assert sorted(stored, key=int) == [str(i) for i in range(len(rows))]


def test_expanding_lists_get_one_placeholder_per_item(connection: sa.Connection) -> None:
    runner = Runner(connection)
    runner.many(_INSERT, [_row("p"), _row("q"), _row("r")])
    expanding = sa.select(resource.c.res_id).where(
        resource.c.res_type == sa.bindparam("type_"),
        resource.c.res_id.in_(sa.bindparam("ids", expanding=True)),
    )
    for ids in (["p", "r", "zz"], ["q"], [], ["r", "p"]):
        params = {"type_": "Basic", "ids": ids}
        expected = sorted(tuple(r) for r in connection.execute(expanding, params))
        assert sorted(runner.rows(expanding, params)) == expected
        assert sorted(expected) == sorted((i,) for i in ids if i in "pqr")
    one, three = (
        prepared.prepared(expanding, connection.dialect, {"ids": ["x"] * n}) for n in (1, 3)
    )
    assert one is not None and three is not None and one.sql != three.sql


def test_statements_it_cannot_prepare_run_through_sqlalchemy(
    connection: sa.Connection,
) -> None:
    runner = Runner(connection)
    runner.many(_INSERT, [_row("p"), _row("q")])
    literal = sa.select(resource.c.res_id).where(
        resource.c.res_id == sa.bindparam("id_", literal_execute=True)
    )
    assert prepared.prepared(literal, connection.dialect, {"id_": "p"}) is None
    assert runner.rows(literal, {"id_": "q"}) == [("q",)]
    # A column default computed in Python (deleted=False) is left to SQLAlchemy too.
    without_deleted = {k: v for k, v in _row("s").items() if k != "deleted"}
    assert prepared.prepared(_INSERT, connection.dialect, without_deleted) is None
    runner.execute(_INSERT, without_deleted)
    assert runner.rows(_BY_TYPE_ID, {"type_": "Basic", "id_": "s"})[0][5] is False


def test_prepared_statements_hold_no_values(connection: sa.Connection) -> None:
    runner = Runner(connection)
    runner.many(_INSERT, [_row("v1"), _row("v2")])
    for res_id in ("v1", "v2"):
        assert runner.rows(_BY_TYPE_ID, {"type_": "Basic", "id_": res_id})[0][2] == res_id
    p = prepared.prepared(_BY_TYPE_ID, connection.dialect, {})
    assert p is not None
    assert "v1" not in p.sql and "v2" not in p.sql
    assert [default for _, _, _, default, _ in p.binds] == [prepared._REQUIRED] * 2


def test_pipelined_writes_are_all_stored(connection: sa.Connection) -> None:
    runner = Runner(connection)
    seq = runner.execute(_INSERT.returning(resource.c.seq), _row("piped"))[0][0][0]
    with runner.pipelined():
        runner.write(_RENAME, {"old_": "piped", "new_": "piped2"})
        runner.many(
            idx_token.insert(),
            [
                {"resource_seq": seq, "res_type": "Basic", "param": "p", "system": None, "code": c}
                for c in ("a", "b")
            ],
        )
    assert runner.rows(_BY_TYPE_ID, {"type_": "Basic", "id_": "piped2"})[0][0] == seq
    codes = runner.rows(sa.select(idx_token.c.code).where(idx_token.c.resource_seq == seq), {})
    assert sorted(codes) == [("a",), ("b",)]


def test_a_deferred_error_is_a_sqlalchemy_exception(connection: sa.Connection) -> None:
    """On PostgreSQL a pipelined write goes with the next statement that waits (here the
    flush before COMMIT); its error must still be the IntegrityError Store.run retries on."""
    runner = Runner(connection)
    runner.execute(_INSERT, _row("taken"))
    with pytest.raises(IntegrityError), connection.begin_nested():
        with runner.pipelined():
            runner.write(_INSERT, _row("taken"))
        runner.flush()
    assert not runner._pipelined


def test_a_rowcount_check_gets_the_rowcount_once_the_write_ran(connection: sa.Connection) -> None:
    runner = Runner(connection)
    runner.execute(_INSERT, _row("one"))
    counts: list[int] = []
    with runner.pipelined():
        runner.write(_RENAME, {"old_": "one", "new_": "uno"}, check=counts.append)
        runner.write(_RENAME, {"old_": "none", "new_": "nada"}, check=counts.append)
    found = runner.rows(_BY_TYPE_ID, {"type_": "Basic", "id_": "uno"})  # PostgreSQL: sent now
    assert counts == [1, 0]
    assert found[0][2] == "uno"


def test_sqlalchemy_statements_of_a_tx_see_its_deferred_writes(connection: sa.Connection) -> None:
    tx = Tx(connection)
    with tx.db.pipelined():
        tx.db.write(_INSERT, _row("deferred"))
    count = sa.select(sa.func.count()).select_from(resource).where(resource.c.res_id == "deferred")
    assert tx.conn.execute(count).scalar_one() == 1


def test_rows_are_not_read_inside_a_pipelined_block(connection: sa.Connection) -> None:
    runner = Runner(connection)
    with pytest.raises(AssertionError), runner.pipelined():
        runner.rows(_BY_TYPE_ID, {"type_": "Basic", "id_": "x"})


def test_a_cached_statement_serves_only_its_own_dialect(connection: sa.Connection) -> None:
    """Caches are keyed by id(): when an engine is gone and a new one's dialect gets the same
    id, the old engine's compiled SQL (another database's placeholders) must not be reused."""
    other = create_db_engine("sqlite://" if connection.dialect.name != "sqlite" else _PG_LIKE)
    try:
        mine = prepared.prepared(_BY_TYPE_ID, connection.dialect, {})
        assert mine is not None
        # Pretend `other`'s dialect sits at the address of this connection's dialect.
        for cache in (prepared._compiled, prepared._prepared):
            for key, entry in list(cache.items()):
                if key[0] == id(connection.dialect) and key[1] == id(_BY_TYPE_ID):
                    cache[(id(other.dialect), *key[1:])] = entry
        theirs = prepared.prepared(_BY_TYPE_ID, other.dialect, {})
        assert theirs is not None
        expected = str(_BY_TYPE_ID.compile(dialect=other.dialect))
        if other.dialect.name == "postgresql":  # run with the server's own placeholders
            expected = expected.replace("%(type_)s", "$1").replace("%(id_)s", "$2")
            assert theirs.native
        assert theirs.sql == expected
        assert theirs.positional
    finally:
        other.dispose()


def test_native_placeholders_number_each_name_once_and_unescape_percent() -> None:
    binds = [(name, name, None, None, None) for name in ("a", "b")]
    sql = "SELECT %(a)s, %(b)s, %(a)s WHERE x LIKE 'p%%'"
    native = prepared._native_placeholders(sql, binds)
    assert native is not None
    assert native[0] == "SELECT $1, $2, $1 WHERE x LIKE 'p%'"
    assert [bind[0] for bind in native[1]] == ["a", "b"]
    assert prepared._native_placeholders("SELECT %(c)s", binds) is None  # no bind for c


def test_reads_together_answer_as_one_by_one(connection: sa.Connection) -> None:
    runner = Runner(connection)
    runner.many(_INSERT, [_row("a"), _row("b"), _row("c", None, deleted=True)])
    # One statement with different values, another statement, an empty answer, and a
    # statement only SQLAlchemy runs (a literal-rendered parameter): it makes the lot run
    # one by one, with the same answers.
    by_id = [(_BY_TYPE_ID, {"type_": "Basic", "id_": res_id}) for res_id in ("a", "c", "zz")]
    ids = sa.select(resource.c.res_id).where(resource.c.res_type == "Basic").order_by("res_id")
    literal = sa.select(resource.c.res_id).where(
        resource.c.res_id.in_(sa.bindparam("ids_", literal_execute=True))
    )
    for requests in (
        [*by_id, (ids, {})],
        [*by_id, (ids, {}), (literal, {"ids_": ["b"]})],
    ):
        expected = [runner.rows(stmt, params) for stmt, params in requests]
        assert runner.rows_together(requests) == expected
    assert expected[-1] == [("b",)]
    assert expected[-2] == [("a",), ("b",), ("c",)]


def test_an_error_in_reads_together_is_a_sqlalchemy_exception(
    connection: sa.Connection,
) -> None:
    runner = Runner(connection)
    # PostgreSQL: the CAST fails on the server, after the pipeline was sent. SQLite casts
    # anything, so there a value the driver cannot bind fails instead.
    bad = sa.select(sa.cast(sa.bindparam("n_", type_=sa.String), sa.Integer) + 1)
    value = object() if connection.dialect.name == "sqlite" else "not a number"
    first = (_BY_TYPE_ID, {"type_": "Basic", "id_": "a"})
    with pytest.raises(sa.exc.DBAPIError):
        runner.rows_together([first, (bad, {"n_": value})])


@pytest.mark.postgres
def test_commit_waits_for_a_rowcount_check_before_committing(postgres_schema_url: str) -> None:
    """A Runner that opens its own transaction sends COMMIT with its last writes, but not
    with a write whose rowcount is checked: that verdict comes first."""

    def exactly_one(rowcount: int) -> None:
        if rowcount != 1:
            raise LookupError("the row changed in between")

    engine = create_db_engine(postgres_schema_url)
    try:
        with engine.connect() as raw:
            runner = Runner(raw.execution_options(isolation_level="AUTOCOMMIT"), begin=True)
            with runner.pipelined():
                runner.write(_INSERT, _row("must-not-stay"))
                runner.write(_RENAME, {"old_": "nobody", "new_": "x"}, check=exactly_one)
            with pytest.raises(LookupError):
                runner.commit()
        with engine.connect() as connection:
            found = connection.execute(_BY_TYPE_ID, {"type_": "Basic", "id_": "must-not-stay"})
            assert found.first() is None
    finally:
        engine.dispose()
