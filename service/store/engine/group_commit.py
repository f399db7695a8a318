"""Group commit on SQLite: concurrent write units share one transaction and one durable COMMIT.

SQLite has one writer, and `Store.arun` runs SQLite units inline on the event loop, one after
the other. Each used to end in its own COMMIT: a WAL write of every page it touched and an
fsync, while the loop, blocked, could do nothing else. Here the first unit opens a batch (BEGIN
IMMEDIATE); units that reach the store while it is open run in the same transaction, each under
its own SAVEPOINT, so a failing unit rolls back alone. The batch commits once no new unit has
joined for a few turns of the event loop; one fsync then covers them all, and pages that several
units touched (the right edges of the history and `_lastUpdated` indexes, the rowid tables) are
written once.

Durability is unchanged: no unit's outcome, success or error, is released before the COMMIT
that covers it has returned. A unit can read what an earlier unit of its batch wrote, as it
would after that unit's own commit; if the COMMIT fails, every unit of the batch fails with it
(503), since nothing any of them saw or wrote was stored. With one request at a time a batch
holds one unit: the added cost is a SAVEPOINT, a RELEASE and a few idle loop turns.

Only async write units go through here. A synchronous `Store.run` write on the event loop's
thread while a batch is open would wait on SQLite's lock for the batch the loop cannot commit:
the service only writes synchronously at start-up and from the CLI, before or outside the loop.

A unit that may run long (a transaction of many entries, a large body) goes to a worker thread
instead, through `run_alone`: it waits for the open batch to commit and keeps new batches from
opening until it has committed on a connection of its own. The units that arrive meanwhile wait
on the event loop (an await), not on SQLite's lock, which would block the loop.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine, RootTransaction
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")
logger = logging.getLogger("careplan")


@dataclass
class _Batch:
    connection: Connection
    transaction: RootTransaction
    loop: asyncio.AbstractEventLoop
    closed: "asyncio.Future[None]"  # done once the batch committed or failed
    waiting: list["asyncio.Future[None]"] = field(default_factory=list)


# Runs one attempt of a unit inside a savepoint; returns its result and after-commit callbacks.
Attempt = Callable[[Connection], tuple[T, list[Callable[[], None]]]]


class GroupCommit:
    def __init__(
        self,
        engine: Engine,
        *,
        retryable: tuple[type[BaseException], ...],
        retries: int,
        conflict: Callable[[], Exception],
        failure: Callable[[Exception], Exception],
        committed: Callable[[], None] = lambda: None,
        idle_turns: int = 3,
        max_units: int = 64,
    ) -> None:
        self.engine = engine
        self.retryable = retryable
        self.retries = retries
        self.conflict = conflict  # the error when every attempt lost its race
        self.failure = failure  # a database error as the client sees it (503)
        self.committed = committed  # called after each batch's COMMIT (checkpoint.py)
        self.idle_turns = idle_turns
        self.max_units = max_units
        self._batch: _Batch | None = None
        self._alone: asyncio.Future[None] | None = None  # done when the run_alone unit ends
        self._committers: set[asyncio.Task[None]] = set()
        self.batches = 0  # committed or failed batches, and the units they held (tests, bench)
        self.units = 0

    async def run(self, attempt: Attempt[T]) -> T:
        if self._alone is not None:
            await self._no_unit_alone()
        batch = self._batch or self._open()
        try:
            result, callbacks = self._attempts(batch, attempt)
        except Exception as exc:
            outcome: BaseException | None = self.failure(exc)
        else:
            outcome = None
        committed: asyncio.Future[None] = batch.loop.create_future()
        batch.waiting.append(committed)
        await committed  # raises the COMMIT's failure
        if outcome is not None:
            raise outcome
        for callback in callbacks:
            callback()
        return result

    async def run_alone(self, work: Callable[[], Awaitable[T]]) -> T:
        """Await ``work`` (a whole unit in a worker thread, with its own transaction) while no
        batch is open: after the open one has committed, and before the next one opens."""
        await self._no_unit_alone()
        alone = self._alone = asyncio.get_running_loop().create_future()
        try:
            if self._batch is not None:
                await asyncio.shield(self._batch.closed)
            return await work()
        finally:
            self._alone = None
            alone.set_result(None)

    async def _no_unit_alone(self) -> None:
        while self._alone is not None:  # several may wait: the first to wake takes its turn
            await asyncio.shield(self._alone)

    def _open(self) -> _Batch:
        loop = asyncio.get_running_loop()
        try:
            connection = self.engine.connect()
        except Exception as exc:
            raise self.failure(exc) from None
        try:
            transaction = connection.begin()  # BEGIN IMMEDIATE (db.py)
        except Exception as exc:
            connection.close()
            raise self.failure(exc) from None
        batch = self._batch = _Batch(connection, transaction, loop, loop.create_future())
        committer = loop.create_task(self._commit_when_idle(batch))
        self._committers.add(committer)  # a task only weakly referenced can vanish
        committer.add_done_callback(self._committers.discard)
        return batch

    def _attempts(self, batch: _Batch, attempt: Attempt[T]) -> tuple[T, list[Callable[[], None]]]:
        for number in range(self.retries):
            _execute(batch.connection, "SAVEPOINT unit")
            try:
                outcome = attempt(batch.connection)
            except self.retryable:
                _execute(batch.connection, *_ROLLBACK_UNIT)
                if number == self.retries - 1:
                    raise self.conflict() from None
                continue
            except BaseException:
                _execute(batch.connection, *_ROLLBACK_UNIT)
                raise
            _execute(batch.connection, "RELEASE unit")  # the unit's writes join the batch
            return outcome
        raise AssertionError("unreachable")

    async def _commit_when_idle(self, batch: _Batch) -> None:
        # Let requests that arrived while the first unit ran reach the store and join.
        seen, idle = len(batch.waiting), 0
        while idle < self.idle_turns and len(batch.waiting) < self.max_units:
            await asyncio.sleep(0)
            if len(batch.waiting) == seen:
                idle += 1
            else:
                seen, idle = len(batch.waiting), 0
        self._batch = None  # later units open the next batch
        error: Exception | None = None
        try:
            batch.transaction.commit()
        except Exception as exc:
            error = self.failure(exc)
            # SQLite leaves a transaction open when COMMIT fails on a deferred constraint.
            with contextlib.suppress(Exception):
                batch.transaction.rollback()
        finally:
            batch.connection.close()
            batch.closed.set_result(None)
        self.batches += 1
        self.units += len(batch.waiting)
        for committed in batch.waiting:
            if committed.done():  # its request was cancelled; its work is stored all the same
                continue
            if error is None:
                committed.set_result(None)
            else:
                committed.set_exception(error)
        if error is None:
            try:
                self.committed()
            except Exception:  # housekeeping only: the batch is stored and answered
                logger.exception("after-commit hook failed")


# ROLLBACK TO undoes the unit but keeps its savepoint open; RELEASE then closes it.
_ROLLBACK_UNIT = ("ROLLBACK TO unit", "RELEASE unit")


def _execute(connection: Connection, *statements: str) -> None:
    """Savepoint statements, straight on the DB-API connection: SQLAlchemy's begin_nested()
    and its commit cost ~65 us per unit (a compiled statement each, events, bookkeeping),
    these ~2 us. Runner (prepared.py) runs the units' own statements the same way."""
    dbapi_connection: Any = connection.connection.dbapi_connection
    error = connection.dialect.loaded_dbapi.Error
    for statement in statements:
        try:
            dbapi_connection.execute(statement).close()
        except error as exc:
            raise DBAPIError.instance(
                statement, (), exc, error, dialect=connection.dialect
            ) from exc


def unit_attempt(make_tx: Callable[[Connection], Any], unit: Callable[[Any], T]) -> Attempt[T]:
    """An Attempt that runs `unit` on a fresh Tx and hands back the Tx's after-commit list."""

    def attempt(connection: Connection) -> tuple[T, list[Callable[[], None]]]:
        tx = make_tx(connection)
        return unit(tx), tx.after_commit

    return attempt
