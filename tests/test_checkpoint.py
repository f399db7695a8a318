"""The background WAL checkpointer (service/store/checkpoint.py): the store nudges it every
CHECKPOINT_EVERY commits, it copies the WAL back into the database file, and it stops with
the engine."""

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.store.db import create_db_engine
from service.store.repository import CHECKPOINT_EVERY, Store, _start_checkpointer


@pytest.fixture
def sqlite_store(sqlite_template: Path, tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "careplan.db"
    shutil.copy(sqlite_template, path)
    engine = create_db_engine(f"sqlite:///{path}")
    yield Store(engine)
    engine.dispose()


def _write(store: Store, rid: str) -> None:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": rid}
    asyncio.run(store.arun(lambda tx: tx.create(patient, rid)))


def test_every_few_commits_the_wal_is_copied_back_in_the_background(sqlite_store: Store) -> None:
    for i in range(CHECKPOINT_EVERY - 1):
        _write(sqlite_store, f"p{i}")
    assert sqlite_store.checkpointer is None  # not needed yet
    _write(sqlite_store, "fourth")
    checkpointer = sqlite_store.checkpointer
    assert checkpointer is not None and checkpointer.running
    assert checkpointer.wait_idle(10)
    assert checkpointer.checkpoints == 1
    busy, frames, copied = checkpointer.last or (None, 0, 0)
    # The four commits' pages were in the WAL, and all of them went into the database file
    # (below the writers' own backstop, they would otherwise still be in the WAL only).
    assert busy == 0 and frames > 0 and copied == frames
    for i in range(CHECKPOINT_EVERY):
        _write(sqlite_store, f"q{i}")
    assert checkpointer.wait_idle(10)
    assert checkpointer.checkpoints == 2 and sqlite_store.checkpointer is checkpointer


def test_disposing_the_engine_stops_it(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "careplan.db"
    shutil.copy(sqlite_template, path)
    engine = create_db_engine(f"sqlite:///{path}")
    store = Store(engine)
    for i in range(CHECKPOINT_EVERY):
        _write(store, f"p{i}")
    checkpointer = store.checkpointer
    assert checkpointer is not None and checkpointer.running
    engine.dispose()
    assert not checkpointer.running


def test_an_in_memory_database_has_none() -> None:
    engine = create_db_engine("sqlite://")
    assert _start_checkpointer(engine) is None
    engine.dispose()
