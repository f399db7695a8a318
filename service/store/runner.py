"""The unit-of-work runner: ``Store.run(unit)`` runs a function of a ``Tx`` in one database
transaction that commits when it returns and rolls back on any error, so a request never
half-writes; lost races and lost connections run the unit again."""

import functools
import time
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from service.observability import record_db_error
from service.store.db import is_sqlite
from service.store.engine.checkpoint import WalCheckpointer
from service.store.engine.group_commit import GroupCommit, unit_attempt
from service.store.errors import Conflict, RetryTransaction, TimedOut, Unavailable
from service.store.repository import Tx

T = TypeVar("T")


# PostgreSQL's SQLSTATE for a statement it cancelled (statement_timeout, or a cancel request).
_QUERY_CANCELED = "57014"


def _operational_kind(exc: OperationalError) -> str:
    """A fixed metric label for an OperationalError (never its message)."""
    text = str(exc.orig).lower()
    if "locked" in text or "busy" in text:
        return "locked"
    if "timeout" in text or "timed out" in text or "canceling statement" in text:
        return "timeout"
    if exc.connection_invalidated or "connect" in text or "closed" in text:
        return "connect"
    return "operational"


# At most one background WAL checkpoint per interval (bench/README.md: 0.1 s beat a checkpoint
# every 4 commits by 14% at one connection, and by 4-5% for plain creates).
CHECKPOINT_INTERVAL_SECONDS = 0.1


class Store:
    def __init__(
        self,
        engine: Engine,
        retries: int = 5,
        checkpoint_interval: float = CHECKPOINT_INTERVAL_SECONDS,
    ) -> None:
        self.engine = engine
        self.retries = retries
        self.sqlite = is_sqlite(engine)
        # Started by the first group commit: the CLI and start-up work never need one.
        self.checkpointer: WalCheckpointer | None = None
        self.checkpoint_interval = checkpoint_interval
        self.group = GroupCommit(
            engine,
            retryable=(IntegrityError, RetryTransaction),
            retries=retries,
            conflict=_conflict,
            failure=_database_failure,
            committed=self._batch_committed,
        )

    def _batch_committed(self) -> None:
        if self.checkpointer is None:
            self.checkpointer = _start_checkpointer(self.engine, self.checkpoint_interval)
        if self.checkpointer is not None:
            self.checkpointer.nudge()

    async def arun(
        self, unit: Callable[["Tx"], T], *, read_only: bool = False, long: bool = False
    ) -> T:
        """``run`` for async routes, chosen by measurement (bench/README.md).

        PostgreSQL: in a worker thread, so a round trip or lock wait does not stall the other
        requests of the process (8 connections: p99 1060 -> 635 ms). SQLite: inline, since
        it has one writer anyway and threads only queue on its lock (p99 455 -> 1560 ms);
        writes there share their COMMIT with the writes that arrive alongside (group_commit.py).
        A unit its caller says may run ``long`` (a search, a transaction of many entries, a
        large body) runs in a worker thread on SQLite too, so that the event loop answers other
        requests meanwhile (/healthz waited 1.4-4.5 s behind a 5,000-entry transaction,
        bench/healthz_under_load.py): a read beside the others (WAL readers wait for no
        writer), a write between the group commit's batches.
        """
        if not self.sqlite:
            return await anyio.to_thread.run_sync(
                functools.partial(self.run, unit, read_only=read_only)
            )
        if long:
            work = functools.partial(self.run, unit, read_only=read_only)
            if read_only:
                return await anyio.to_thread.run_sync(work)
            result = await self.group.run_alone(lambda: anyio.to_thread.run_sync(work))
            self._batch_committed()
            return result
        if read_only:
            return self.run(unit, read_only=True)
        return await self.group.run(unit_attempt(Tx, unit))

    def run(self, unit: Callable[["Tx"], T], *, read_only: bool = False) -> T:
        """Run ``unit`` in one transaction, again when it lost a race on a unique key or its
        connection before COMMIT."""
        for attempt in range(self.retries):
            committing = False
            try:
                with self.engine.connect() as raw:
                    if self.sqlite:
                        conn = raw.execution_options(read_only=read_only)
                        tx = Tx(conn)
                        with conn.begin():  # SQLite: no write waits (prepared.Runner)
                            result = unit(tx)
                            committing = True
                    else:
                        # BEGIN goes with the unit's first statement and COMMIT with its last
                        # writes (prepared.Runner), a round trip each saved. A read-only unit
                        # has neither: in autocommit each statement sees what was committed
                        # before it, as under READ COMMITTED in a transaction. After a failure
                        # the pool's reset-on-return rolls back what is open.
                        conn = raw.execution_options(isolation_level="AUTOCOMMIT")
                        tx = Tx(conn, begin=not read_only)
                        result = unit(tx)
                        committing = True
                        tx.commit()
                # Only now is the work durable: side effects such as metrics happen once.
                for callback in tx.after_commit:
                    callback()
                return result
            except (IntegrityError, RetryTransaction):
                if attempt == self.retries - 1:
                    raise _conflict() from None
                time.sleep(0.005 * (attempt + 1))
            except DBAPIError as exc:
                last = attempt == self.retries - 1
                # A connection lost before COMMIT was sent (a restarted server, a pooled
                # connection that idled out): the server rolled the work back, so it runs
                # again on a new one. Lost during COMMIT, the outcome is unknown: 503.
                if exc.connection_invalidated and not committing and not last:
                    continue
                if isinstance(exc, OperationalError) and "locked" in str(exc).lower() and not last:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise _database_failure(exc) from None
            except SATimeoutError as exc:
                raise _database_failure(exc) from None
        raise AssertionError("unreachable")


def _start_checkpointer(engine: Engine, interval: float) -> WalCheckpointer | None:
    """A background checkpointer for a SQLite file, stopped when the engine is disposed."""
    database = engine.url.database
    if not is_sqlite(engine) or not database or database == ":memory:":
        return None
    checkpointer = WalCheckpointer(database, interval)
    sa.event.listen(engine, "engine_disposed", lambda _engine: checkpointer.stop())
    return checkpointer


def _conflict() -> Conflict:
    record_db_error("conflict")
    return Conflict("Concurrent update, please retry")


def _database_failure(exc: Exception) -> Exception:
    """A database error as the caller sees it: Unavailable, never a driver's message. Anything
    else (a unit's own error, a bug) passes through unchanged."""
    if isinstance(exc, OperationalError):
        record_db_error(_operational_kind(exc))
        if getattr(exc.orig, "sqlstate", None) == _QUERY_CANCELED:
            return TimedOut(
                "The request took too long in the database and was cancelled; "
                "narrow the search, or retry later"
            )
        return Unavailable("The database is unavailable")
    if isinstance(exc, (SATimeoutError, DBAPIError)):
        # Pool exhausted, or a driver error that is neither a conflict nor a lost connection.
        record_db_error("pool" if isinstance(exc, SATimeoutError) else "driver")
        return Unavailable("The database is busy")
    return exc
