"""The JWT ids already presented, in the database (store/jti.py): one use per (issuer, jti)
across processes, forgotten once expired, and atomic under concurrent use."""

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from service.store.db import create_db_engine
from service.store.jti import first_use
from service.store.runner import Store
from service.store.tables import used_jti

NOW = 1_800_000_000.0


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = create_db_engine(database_url)
    yield Store(engine)
    engine.dispose()


class DatabaseJtiStore:
    """The table as a JtiStore: each check its own transaction (the app runs it through the
    event loop's store, usecases/cds/access.py)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_if_absent(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        return self.store.run(lambda tx: first_use(tx, issuer, jti, expires_at, now))


def _rows(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(
            connection.execute(sa.select(sa.func.count()).select_from(used_jti)).scalar_one()
        )


def test_a_jti_is_accepted_once_per_issuer(store: Store) -> None:
    jtis = DatabaseJtiStore(store)
    assert jtis.add_if_absent("https://ehr-a", "j1", NOW + 300, NOW)
    assert not jtis.add_if_absent("https://ehr-a", "j1", NOW + 300, NOW + 10)
    assert jtis.add_if_absent("https://ehr-b", "j1", NOW + 300, NOW + 10)


def test_a_second_process_sees_the_first_ones_jti(store: Store, database_url: str) -> None:
    """Two replicas: two engines (pools) on one database."""
    other_engine = create_db_engine(database_url)
    try:
        assert DatabaseJtiStore(store).add_if_absent("https://ehr", "j", NOW + 300, NOW)
        assert not DatabaseJtiStore(Store(other_engine)).add_if_absent(
            "https://ehr", "j", NOW + 300, NOW
        )
    finally:
        other_engine.dispose()


def test_expired_rows_are_forgotten(store: Store) -> None:
    jtis = DatabaseJtiStore(store)
    jtis.add_if_absent("https://ehr", "old", NOW + 60, NOW)
    jtis.add_if_absent("https://ehr", "new", NOW + 600, NOW)
    assert _rows(store) == 2
    assert jtis.add_if_absent("https://ehr", "later", NOW + 900, NOW + 120)
    assert _rows(store) == 2  # "old" expired and went
    assert jtis.add_if_absent("https://ehr", "old", NOW + 900, NOW + 120)


def test_concurrent_uses_of_one_jti_let_exactly_one_through(store: Store) -> None:
    jtis = DatabaseJtiStore(store)
    count = 8
    barrier = threading.Barrier(count)

    def use(_: int) -> bool:
        barrier.wait()
        return jtis.add_if_absent("https://ehr", "raced", NOW + 300, NOW)

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(use, range(count)))
    assert results.count(True) == 1
