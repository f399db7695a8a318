"""The statement caches are bounded by memory, not only by entries.

A compiled search statement costs about 30 bytes per character of its SQL (a 16-clause
shape's page and count statements held ~140 KB), and every distinct shape used to be kept:
a client choosing distinct large shapes grew the process by hundreds of MB. Now a large
shape is built for its call and kept by no cache, and the prepared-statement caches keep at
most _CACHE_CHARS of SQL each.
"""

import gc
import random
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from service.fhir.search import parse_search
from service.store import query as q
from service.store.db import create_db_engine
from service.store.engine import prepared
from service.store.runner import Store

STRINGS = ("name", "family", "given", "address", "address-city")
DATES = ("birthdate", "death-date", "_lastUpdated")
PREFIXES = ("ge", "le", "gt", "lt", "eq", "ne", "sa", "eb", "ap")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = create_db_engine(database_url)
    yield Store(engine)
    engine.dispose()


def _items(rng: random.Random, clauses: int) -> list[tuple[str, str]]:
    """A random search of `clauses` criteria: almost surely a shape not seen before."""
    items = []
    for i in range(clauses):  # distinct values: no clause repeats another
        if rng.random() < 0.5:
            name = rng.choice(STRINGS) + rng.choice(("", ":exact", ":contains"))
            items.append((name, ",".join([f"a{i}"] * rng.randint(1, 3))))
        else:
            items.append((rng.choice(DATES), f"{rng.choice(PREFIXES)}{2000 + i}"))
    return items


def _search(store: Store, items: list[tuple[str, str]]) -> None:
    query = parse_search("Patient", items, default_count=20, max_count=100)
    store.run(lambda tx: tx.search(query), read_only=True)


def _sizes() -> tuple[int, int, int]:
    return q.conditions.cache_info().currsize, len(prepared._compiled), len(prepared._prepared)


def _clear_caches() -> None:
    for cached in (q.conditions, q.page_statement, q.ids_statement, q.count_statement):
        cached.cache_clear()  # type: ignore[attr-defined]
    prepared._compiled.clear()
    prepared._prepared.clear()


def test_a_large_shape_is_kept_by_no_cache(store: Store) -> None:
    _clear_caches()
    items = _items(random.Random(7), 16)
    where = q.where(parse_search("Patient", items, default_count=20, max_count=100))
    assert where.shape[3] > q.MAX_CACHED_SHAPE_SIZE
    _search(store, items)  # whatever the first run of anything caches (constants)
    before = _sizes()
    for _ in range(3):
        _search(store, items)
    assert _sizes() == before
    assert q.page_statement(where.shape, ()) is not q.page_statement(where.shape, ())
    # A small shape is kept, and the next search of that shape uses it.
    small = [("family", "a"), ("birthdate", "ge2000")]
    _search(store, small)
    grown = _sizes()
    assert all(after > was for after, was in zip(grown, before, strict=True))
    _search(store, small)
    assert _sizes() == grown


def test_the_prepared_caches_hold_at_most_their_budget_of_sql(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepared, "_CACHE_CHARS", 20_000)
    _clear_caches()
    rng = random.Random(11)
    for _ in range(60):
        _search(store, _items(rng, rng.randint(1, 4)))  # small shapes: all cacheable
        for cache in (prepared._compiled, prepared._prepared):
            assert cache.chars <= 20_000
            assert cache.chars == sum(_chars(value) for _, value in cache.values())
    # A statement longer than _MAX_CACHED_CHARS is compiled for its run and not kept.
    monkeypatch.setattr(prepared, "_MAX_CACHED_CHARS", 100)
    _clear_caches()
    _search(store, [("family", "a"), ("given", "b")])
    assert all(_chars(value) <= 100 for _, value in prepared._prepared.values())


def _chars(value: Any) -> int:
    if value is None:
        return 0
    return len(value.sql) if isinstance(value, prepared.Prepared) else len(value.string)


def test_distinct_large_searches_do_not_grow_memory(store: Store) -> None:
    rng = random.Random(3)
    searches = [_items(rng, 16) for _ in range(150)]
    _search(store, searches[0])
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for items in searches:
            _search(store, items)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    # Each such shape used to keep ~150 KB (over 20 MB for these); now they keep nothing.
    assert grown < 3_000_000, grown
