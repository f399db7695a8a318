"""Which use cases run their SQLite statements off the event loop's thread: those that may take
long (a search, a history page, a transaction of many entries or with a GET, a large body), so
that the loop answers other requests meanwhile; the short ones stay on it, where they cost
least (bench/README.md, "Async choice")."""

import asyncio
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service.fhir.search import parse_search
from service.store.db import create_db_engine
from service.store.runner import Store
from service.usecases import crud, transaction
from service.usecases.transaction import INLINE_ENTRIES, Paging

BASE = "http://test/fhir"
PAGING = Paging(20, 500)


@pytest.fixture
def traced(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[Store, list[int]]]:
    """A SQLite store and the threads its statements ran on (SQLite's trace callback runs on
    the executing thread)."""
    path = tmp_path / "careplan.db"
    shutil.copy(sqlite_template, path)
    engine = create_db_engine(f"sqlite:///{path}")
    threads: list[int] = []

    @sa.event.listens_for(engine, "connect")
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(lambda _sql: threads.append(threading.get_ident()))

    yield Store(engine), threads
    engine.dispose()


def _threads_of(threads: list[int], call: Callable[[], Awaitable[Any]]) -> tuple[int, set[int]]:
    """The event loop's thread, and the threads the call's statements ran on."""

    async def main() -> int:
        del threads[:]
        await call()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads, "no statement ran"
    return loop_thread, set(threads)


def _patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


def _transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _post(family: str) -> dict[str, Any]:
    return {"resource": _patient(family), "request": {"method": "POST", "url": "Patient"}}


def test_short_units_run_on_the_event_loop(traced: tuple[Store, list[int]]) -> None:
    store, threads = traced
    stored, _ = asyncio.run(crud.create(store, _patient("a"), None, None))
    for call in (
        lambda: crud.create(store, _patient("b"), None, None),
        lambda: crud.read(store, "Patient", stored.id, None),
        lambda: transaction.transaction(store, _transaction([_post("c")]), BASE, PAGING, None),
    ):
        loop_thread, ran_on = _threads_of(threads, call)
        assert ran_on == {loop_thread}


def test_units_that_may_take_long_run_off_the_event_loop(
    traced: tuple[Store, list[int]],
) -> None:
    store, threads = traced
    query = parse_search("Patient", [("name", "a")], default_count=20, max_count=500)
    many = _transaction([_post(f"p{i}") for i in range(INLINE_ENTRIES + 1)])
    with_search = _transaction([{"request": {"method": "GET", "url": "Patient?name=p"}}])
    for call in (
        lambda: crud.search(store, query, BASE, None),
        lambda: crud.history(store, BASE, "_history", (None, None), None, 20, None, [], None),
        lambda: transaction.transaction(store, many, BASE, PAGING, None),
        lambda: transaction.transaction(store, with_search, BASE, PAGING, None),
        lambda: crud.create(store, _patient("large"), None, None, long=True),
    ):
        loop_thread, ran_on = _threads_of(threads, call)
        assert loop_thread not in ran_on
