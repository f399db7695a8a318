"""Engine creation: SQLite (embedded default, WAL) and PostgreSQL (production)."""

from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

BACKSTOP_CHECKPOINT_PAGES = 10_000  # ~40 MB of WAL; SQLite's default is 1,000


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_db_engine(url: str, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    """`pool_size` and `max_overflow` bound PostgreSQL connections per process (SQLite has
    one file and no server to spare)."""
    parsed = make_url(url)
    common: dict[str, Any] = {
        "json_serializer": _json_serializer,
        "json_deserializer": orjson.loads,
    }
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **common
        )
        _configure_sqlite(engine)
        return engine
    # No pre-ping: it cost a round trip per transaction (1 of a submission's 14). A pooled
    # connection found dead at a unit's first statement is replaced and the unit run again
    # (Store.run), before anything was committed.
    return sa.create_engine(url, pool_size=pool_size, max_overflow=max_overflow, **common)


def limit_statement_time(engine: Engine, timeout_ms: int) -> None:
    """PostgreSQL: the server cancels any statement of `engine` that runs longer than
    `timeout_ms` (0: none), so one expensive search cannot hold a connection and a CPU for
    minutes, even after its client has gone.

    Applied after start-up (migrations may take longer) to every connection: those already
    in the pool are closed, each new one gets the setting once, as it connects.
    """
    if is_sqlite(engine) or timeout_ms <= 0:
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET statement_timeout = {int(timeout_ms)}")
        cursor.close()
        dbapi_connection.commit()

    engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives power loss, as "nothing accepted is ever lost" requires.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # A unit's SAVEPOINT journal (group_commit.py) in memory: on a file, the original of
        # every page a unit changes was written out once it passed 64 KiB.
        cursor.execute("PRAGMA temp_store=MEMORY")
        # The service checkpoints in a thread (checkpoint.py); this is the backstop, inline in
        # a COMMIT, for when that thread falls behind and for processes without one (the CLI).
        cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two writers never deadlock upgrading a
        # read lock; WAL readers are not blocked by it, and read-only work skips the lock.
        if connection.get_execution_options().get("read_only"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
