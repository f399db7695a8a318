"""Store.arun, the store's entry point for async routes (inline on SQLite, in a worker thread
on PostgreSQL): concurrent units, a failing unit, a lost race and its retry."""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from service.fhir.errors import FhirError
from service.store.db import create_db_engine
from service.store.repository import RetryTransaction, Store, Tx
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

    with pytest.raises(FhirError) as caught:
        asyncio.run(store.arun(unit))
    assert caught.value.status == 409
