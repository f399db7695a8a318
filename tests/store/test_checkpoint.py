"""The background WAL checkpointer (service/store/checkpoint.py): a group commit nudges it at
most once per interval, it copies the WAL back into the database file, and it stops with the
engine."""

import asyncio
import shutil
from pathlib import Path
from typing import Any

from service.store.db import create_db_engine
from service.store.runner import Store, _start_checkpointer


def _store(sqlite_template: Path, tmp_path: Path, interval: float) -> Store:
    path = tmp_path / "careplan.db"
    shutil.copy(sqlite_template, path)
    return Store(create_db_engine(f"sqlite:///{path}"), checkpoint_interval=interval)


def _write(store: Store, rid: str) -> None:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": rid}
    asyncio.run(store.arun(lambda tx: tx.create(patient, rid)))


def test_a_commit_nudges_it_at_most_once_per_interval(
    sqlite_template: Path, tmp_path: Path
) -> None:
    store = _store(sqlite_template, tmp_path, interval=3600)
    assert store.checkpointer is None  # started by the first group commit
    _write(store, "first")
    checkpointer = store.checkpointer
    assert checkpointer is not None and checkpointer.running
    assert checkpointer.wait_idle(10)
    assert checkpointer.checkpoints == 1
    busy, frames, copied = checkpointer.last or (None, 0, 0)
    # The commit's pages were in the WAL, and all went into the database file (below the
    # writers' own backstop, they would otherwise still be in the WAL only).
    assert busy == 0 and frames > 0 and copied == frames
    for i in range(5):
        _write(store, f"p{i}")
    assert checkpointer.wait_idle(10)
    assert checkpointer.checkpoints == 1  # within the interval: not nudged again
    store.engine.dispose()


def test_with_no_interval_every_commit_nudges_it(sqlite_template: Path, tmp_path: Path) -> None:
    store = _store(sqlite_template, tmp_path, interval=0)
    for i in range(3):
        _write(store, f"p{i}")
        assert store.checkpointer is not None and store.checkpointer.wait_idle(10)
    assert store.checkpointer.checkpoints == 3
    store.engine.dispose()


def test_disposing_the_engine_stops_it(sqlite_template: Path, tmp_path: Path) -> None:
    store = _store(sqlite_template, tmp_path, interval=0)
    _write(store, "p")
    checkpointer = store.checkpointer
    assert checkpointer is not None and checkpointer.running
    store.engine.dispose()
    assert not checkpointer.running


def test_an_in_memory_database_has_none() -> None:
    engine = create_db_engine("sqlite://")
    assert _start_checkpointer(engine, 0.1) is None
    engine.dispose()


def test_a_failing_after_commit_hook_leaves_the_batch_stored_and_answered(
    sqlite_template: Path, tmp_path: Path
) -> None:
    store = _store(sqlite_template, tmp_path, interval=0)

    def broken() -> None:
        raise RuntimeError("cannot start a thread")

    store.group.committed = broken
    _write(store, "kept")
    assert store.run(lambda tx: tx.get("Patient", "kept"), read_only=True) is not None
    store.engine.dispose()
