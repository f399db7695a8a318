"""Store.arun, the store's entry point for async routes (inline on SQLite, in a worker thread
on PostgreSQL and for long units): concurrent units, a failing unit, a lost race and its retry,
long units beside the event loop."""

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service.api.errors import as_fhir_error
from service.fhir.errors import FhirError
from service.store.db import create_db_engine
from service.store.errors import Conflict, RetryTransaction, Unavailable
from service.store.repository import Tx
from service.store.runner import Store
from service.store.tables import resource, resource_history


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = create_db_engine(database_url)
    yield Store(engine)
    engine.dispose()


def _patient(rid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": rid, "name": [{"family": rid}]}


def _count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_concurrent_writes_all_commit(store: Store) -> None:
    async def main() -> list[str]:
        units = [
            store.arun(lambda tx, i=i: tx.create(_patient(f"p{i}"), f"p{i}").id) for i in range(20)
        ]
        return await asyncio.gather(*units)

    assert sorted(asyncio.run(main())) == sorted(f"p{i}" for i in range(20))
    assert _count(store, resource) == 20
    assert store.group.batches == (1 if store.sqlite else 0)  # one COMMIT for all on SQLite
    assert _count(store, resource_history) == 20
    found = store.run(lambda tx: tx.find("Patient", [("name", "p7")]), read_only=True)
    assert [p["id"] for p in found] == ["p7"]


def test_a_failing_write_leaves_nothing_and_the_next_one_commits(store: Store) -> None:
    def failing(tx: Tx) -> None:
        tx.create(_patient("gone"), "gone")
        raise ValueError("the unit failed after writing")

    async def main() -> None:
        results = await asyncio.gather(
            store.arun(failing),
            store.arun(lambda tx: tx.create(_patient("kept"), "kept")),
            return_exceptions=True,
        )
        assert isinstance(results[0], ValueError)
        assert results[1].id == "kept"

    asyncio.run(main())
    assert store.run(lambda tx: tx.get("Patient", "gone")) is None
    assert _count(store, resource) == 1


def test_a_lost_race_is_retried_and_callbacks_run_once_after_commit(store: Store) -> None:
    attempts: list[int] = []
    committed: list[str] = []

    def unit(tx: Tx) -> str:
        attempts.append(len(attempts))
        tx.create(_patient(f"try{len(attempts)}"), f"try{len(attempts)}")
        tx.after_commit.append(lambda: committed.append("done"))
        if len(attempts) == 1:
            raise RetryTransaction()
        return "ok"

    assert asyncio.run(store.arun(unit)) == "ok"
    assert attempts == [0, 1]
    assert committed == ["done"]
    ids = store.run(lambda tx: [p["id"] for p in tx.find("Patient", [])], read_only=True)
    assert ids == ["try2"]  # the first attempt was rolled back


def test_a_race_lost_every_time_is_a_409(store: Store) -> None:
    def unit(tx: Tx) -> None:
        raise RetryTransaction()

    with pytest.raises(Conflict) as caught:
        asyncio.run(store.arun(unit))
    assert as_fhir_error(caught.value).status == 409


@pytest.fixture
def sqlite_store(sqlite_template: Path, tmp_path: Path) -> Iterator[Store]:
    """Group commit is SQLite's: on PostgreSQL every unit commits on its own, in a thread."""
    path = tmp_path / "careplan.db"
    shutil.copy(sqlite_template, path)
    engine = create_db_engine(f"sqlite:///{path}")
    yield Store(engine)
    engine.dispose()


def test_concurrent_writes_share_one_commit_on_sqlite(sqlite_store: Store) -> None:

    async def main() -> list[str]:
        return await asyncio.gather(
            *(
                sqlite_store.arun(lambda tx, i=i: tx.create(_patient(f"g{i}"), f"g{i}").id)
                for i in range(10)
            )
        )

    assert sorted(asyncio.run(main())) == sorted(f"g{i}" for i in range(10))
    assert (sqlite_store.group.batches, sqlite_store.group.units) == (1, 10)
    # One unit at a time: a batch of one each.
    asyncio.run(sqlite_store.arun(lambda tx: tx.create(_patient("alone"), "alone")))
    assert (sqlite_store.group.batches, sqlite_store.group.units) == (2, 11)
    assert _count(sqlite_store, resource) == 11


def test_a_failing_unit_rolls_back_alone_inside_its_batch(sqlite_store: Store) -> None:

    def failing(tx: Tx) -> None:
        tx.create(_patient("gone"), "gone")
        raise FhirError(422, [])

    async def main() -> list[Any]:
        return await asyncio.gather(
            sqlite_store.arun(lambda tx: tx.create(_patient("before"), "before")),
            sqlite_store.arun(failing),
            sqlite_store.arun(lambda tx: tx.get("Patient", "before") is not None),
            return_exceptions=True,
        )

    before, failed, saw_before = asyncio.run(main())
    assert sqlite_store.group.batches == 1
    assert before.id == "before" and isinstance(failed, FhirError) and saw_before is True
    assert sqlite_store.run(lambda tx: tx.get("Patient", "gone")) is None
    assert _count(sqlite_store, resource) == 1


def test_a_failed_commit_fails_every_unit_of_the_batch_and_stores_nothing(
    sqlite_store: Store,
) -> None:
    committed: list[str] = []

    def dangling(tx: Tx) -> None:
        # A real COMMIT failure: a foreign key checked only at COMMIT, pointing nowhere.
        tx.conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        tx.conn.exec_driver_sql(
            "INSERT INTO conditional_key (res_type, criteria, resource_seq) VALUES ('X', 'y', 999)"
        )

    def kept(tx: Tx) -> str:
        tx.after_commit.append(lambda: committed.append("kept"))
        return tx.create(_patient("kept"), "kept").id

    async def main() -> list[Any]:
        return await asyncio.gather(
            sqlite_store.arun(kept), sqlite_store.arun(dangling), return_exceptions=True
        )

    results = asyncio.run(main())
    assert all(isinstance(r, Unavailable) for r in results), results
    assert [as_fhir_error(r).status for r in results] == [503, 503]
    assert committed == []
    assert _count(sqlite_store, resource) == 0
    # The store goes on.
    assert asyncio.run(sqlite_store.arun(kept)) == "kept"
    assert committed == ["kept"]


def test_a_read_does_not_see_a_batch_before_its_commit(sqlite_store: Store) -> None:

    async def main() -> list[Any]:
        return await asyncio.gather(
            sqlite_store.arun(lambda tx: tx.create(_patient("w"), "w").id),
            sqlite_store.arun(lambda tx: tx.get("Patient", "w"), read_only=True),
        )

    assert asyncio.run(main()) == ["w", None]
    assert sqlite_store.run(lambda tx: tx.get("Patient", "w"), read_only=True) is not None


def test_a_cancelled_request_still_commits_its_batch(sqlite_store: Store) -> None:

    async def main() -> str:
        first = asyncio.create_task(sqlite_store.arun(lambda tx: tx.create(_patient("a"), "a").id))
        second = asyncio.create_task(sqlite_store.arun(lambda tx: tx.create(_patient("b"), "b").id))
        await asyncio.sleep(0)  # both units have run; the batch is not committed yet
        assert sqlite_store.group.batches == 0
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(main()) == "b"
    ids = sqlite_store.run(
        lambda tx: sorted(p["id"] for p in tx.find("Patient", [])), read_only=True
    )
    assert ids == ["a", "b"]


@pytest.mark.parametrize("read_only", [True, False], ids=["read", "write"])
def test_a_long_unit_runs_beside_the_event_loop(store: Store, read_only: bool) -> None:
    release = threading.Event()

    def unit(tx: Tx) -> str:
        # Set by the event loop: an inline unit would wait here for nothing, the loop blocked.
        assert release.wait(30), "the event loop was blocked while the unit ran"
        if read_only:
            return "read"
        return tx.create(_patient("long"), "long").id

    async def main() -> str:
        task = asyncio.create_task(store.arun(unit, read_only=read_only, long=True))
        await asyncio.sleep(0)  # the unit starts
        release.set()
        return await task

    assert asyncio.run(main()) == ("read" if read_only else "long")


def test_a_long_write_runs_between_batches_and_later_writes_wait_for_it(
    sqlite_store: Store,
) -> None:
    release = threading.Event()
    seen: dict[str, bool] = {}

    def long_unit(tx: Tx) -> str:
        seen["before"] = tx.get("Patient", "before") is not None
        tx.create(_patient("long"), "long")
        # A later write that took SQLite's lock on the event loop would block the loop here.
        assert release.wait(30), "the event loop was blocked while the long unit ran"
        return "long"

    def after(tx: Tx) -> tuple[bool, str]:
        return tx.get("Patient", "long") is not None, tx.create(_patient("after"), "after").id

    async def main() -> tuple[str, tuple[bool, str]]:
        before = asyncio.create_task(
            sqlite_store.arun(lambda tx: tx.create(_patient("before"), "before").id)
        )
        await asyncio.sleep(0)  # its batch is open, not yet committed
        long = asyncio.create_task(sqlite_store.arun(long_unit, long=True))
        later = asyncio.create_task(sqlite_store.arun(after))
        assert await before == "before"
        for _ in range(5):
            await asyncio.sleep(0)  # the later write reaches the store while the long one runs
        assert not later.done()
        release.set()
        return await long, await later

    assert asyncio.run(main()) == ("long", (True, "after"))
    assert seen == {"before": True}  # the long unit started after the open batch committed
    assert _count(sqlite_store, resource) == 3
