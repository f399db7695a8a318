"""The store builds each statement once and binds values per call: results must not leak
between calls that share a statement, and a new version must replace all of the old one."""

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from service.fhir.search import parse_search
from service.store import query as q
from service.store.db import create_db_engine
from service.store.repository import Stored, Tx
from service.store.runner import Store
from service.store.tables import INDEX_TABLES, conditional_key, resource_history


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = create_db_engine(database_url)
    yield Store(engine)
    engine.dispose()


def _observation(rid: str, patient: str, code: str, when: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "identifier": [{"system": "urn:test", "value": f"id-{rid}"}],
        "code": {"coding": [{"system": "urn:codes", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "system": "urn:units", "code": "mg"},
    }


def _ids(store: Store, resource_type: str, items: list[tuple[str, str]]) -> list[str]:
    return store.run(lambda tx: sorted(b["id"] for b in tx.find(resource_type, items)))


def _query(resource_type: str, items: list[tuple[str, str]]) -> Any:
    return parse_search(resource_type, items, default_count=20, max_count=100)


def test_queries_of_one_shape_share_sql_but_not_values(store: Store) -> None:
    store.run(
        lambda tx: tx.create_many(
            [
                (_observation("a", "p1", "x", "2024-01-10T10:00:00Z", 5.4), "a"),
                (_observation("b", "p2", "y", "2024-03-10T10:00:00Z", 7.0), "b"),
            ]
        )
    )
    window_a = [("patient", "Patient/p1"), ("date", "ge2024-01-01"), ("date", "le2024-01-31")]
    window_b = [("patient", "Patient/p2"), ("date", "ge2024-03-01"), ("date", "le2024-03-31")]
    assert q.where(_query("Observation", window_a)).shape == (
        q.where(_query("Observation", window_b)).shape
    )
    # Run alternately, so each runs on the statement the other built.
    for _ in range(2):
        assert _ids(store, "Observation", window_a) == ["a"]
        assert _ids(store, "Observation", window_b) == ["b"]
        assert _ids(store, "Observation", [("date", "2024-01-10")]) == ["a"]
        assert _ids(store, "Observation", [("date", "2024-03-10")]) == ["b"]
        assert _ids(store, "Observation", [("code", "urn:codes|x")]) == ["a"]
        assert _ids(store, "Observation", [("code", "urn:codes|y")]) == ["b"]
        assert _ids(store, "Observation", [("value-quantity", "5.4|urn:units|mg")]) == ["a"]
        assert _ids(store, "Observation", [("value-quantity", "7|urn:units|mg")]) == ["b"]
        assert _ids(store, "Observation", [("_id", "a,b"), ("code", "x,y")]) == ["a", "b"]
        assert _ids(store, "Observation", [("_id", "b"), ("code", "x,y")]) == ["b"]


def test_a_shape_holds_no_search_values() -> None:
    """Shapes are cache keys: they must stay few, so values never get into them."""
    items = [
        ("patient", "Patient/secret-patient"),
        ("code", "urn:codes|secret-code,other-secret"),
        ("date", "ge2031-02-03"),
        ("value-quantity", "ap12.5|urn:units|secret-unit"),
        ("_id", "secret-id"),
    ]
    shape = repr(q.where(_query("Observation", items)).shape)
    for value in ("secret", "2031", "12.5", "urn:codes", "urn:units"):
        assert value not in shape


def _index_rows(tx: Tx, seq: int) -> dict[str, int]:
    counts = {}
    for kind, table in INDEX_TABLES.items():
        stmt = sa.select(sa.func.count()).where(table.c.resource_seq == seq)
        counts[kind] = tx.conn.execute(stmt).scalar_one()
    return counts


def _create_patient_by_mrn(
    store: Store, mrn: str, family: str
) -> tuple[Stored, dict[str, Any], list[tuple[str, str]]]:
    """A Patient created with If-None-Exist on its MRN: it has a criteria key."""
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": mrn}],
        "name": [{"family": family}],
        "birthDate": "1970-01-01",
    }
    criteria = [("identifier", f"urn:mrn|{mrn}")]
    created, _ = store.run(lambda tx: tx.create_conditional(patient, _query("Patient", criteria)))
    return created, patient, criteria


def test_a_new_version_replaces_every_index_row_and_the_criteria_key(store: Store) -> None:
    created, patient, criteria = _create_patient_by_mrn(store, "old-mrn", "Oldname")
    seq = created.seq
    before = store.run(lambda tx: _index_rows(tx, seq))
    assert before["token"] and before["string"] and before["date"]

    changed = {
        **patient,
        "identifier": [{"system": "urn:mrn", "value": "new-mrn"}],
        "name": [{"family": "Newname"}],
    }
    updated, _ = store.run(lambda tx: tx.update(changed, created.id, if_match=1))
    assert updated.version == 2
    assert store.run(lambda tx: _index_rows(tx, seq)) == before  # replaced, not added to
    assert _ids(store, "Patient", criteria) == []
    assert _ids(store, "Patient", [("name", "oldname")]) == []
    assert _ids(store, "Patient", [("identifier", "urn:mrn|new-mrn")]) == [created.id]
    assert _ids(store, "Patient", [("name", "newname")]) == [created.id]

    def keys_and_history(tx: Tx) -> tuple[int, list[tuple[int, str, bool]]]:
        keys = tx.conn.execute(
            sa.select(sa.func.count()).where(conditional_key.c.resource_seq == seq)
        ).scalar_one()
        history = tx.conn.execute(
            sa.select(
                resource_history.c.version, resource_history.c.method, resource_history.c.deleted
            )
            .where(resource_history.c.res_id == created.id)
            .order_by(resource_history.c.version)
        ).all()
        return keys, [tuple(row) for row in history]

    assert store.run(keys_and_history) == (0, [(1, "POST", False), (2, "PUT", False)])

    store.run(lambda tx: tx.delete("Patient", created.id))
    assert set(store.run(lambda tx: _index_rows(tx, seq)).values()) == {0}
    _, history = store.run(keys_and_history)
    assert history[-1] == (3, "DELETE", True)
    assert store.run(lambda tx: tx.vread("Patient", created.id, 2)).body == updated.body


def _mark_index_rows(tx: Tx, seq: int) -> None:
    """Put a value into the resource's string rows that indexing never writes: a rewrite of
    the rows would remove it (row ids cannot tell, SQLite reuses them)."""
    table = INDEX_TABLES["string"]
    tx.conn.execute(
        table.update().where(table.c.resource_seq == seq).values(value_exact="<marker>")
    )


def _marked(tx: Tx, seq: int) -> int:
    table = INDEX_TABLES["string"]
    stmt = sa.select(sa.func.count()).where(
        table.c.resource_seq == seq, table.c.value_exact == "<marker>"
    )
    return tx.conn.execute(stmt).scalar_one()


def test_a_new_version_with_the_same_index_rows_keeps_them(store: Store) -> None:
    """A change no search parameter sees (a decision's CarePlan update) leaves the rows alone;
    the criteria key still goes, as with any update."""
    created, patient, criteria = _create_patient_by_mrn(store, "mrn-1", "Same")
    seq = created.seq
    before = store.run(lambda tx: _index_rows(tx, seq))
    store.run(lambda tx: _mark_index_rows(tx, seq))
    marked = store.run(lambda tx: _marked(tx, seq))
    assert marked == before["string"] > 0

    unindexed_change = {**patient, "multipleBirthBoolean": False}  # no R4 search parameter
    updated, _ = store.run(lambda tx: tx.update(unindexed_change, created.id, if_match=1))
    assert updated.version == 2 and updated.body["multipleBirthBoolean"] is False
    assert store.run(lambda tx: _marked(tx, seq)) == marked  # the very same rows
    assert store.run(lambda tx: _index_rows(tx, seq)) == before
    assert _ids(store, "Patient", criteria) == [created.id]
    keys = store.run(
        lambda tx: tx.conn.execute(
            sa.select(sa.func.count()).where(conditional_key.c.resource_seq == seq)
        ).scalar_one()
    )
    assert keys == 0

    # The next change that a parameter does see rewrites them.
    renamed = {**unindexed_change, "name": [{"family": "Other"}]}
    store.run(lambda tx: tx.update(renamed, created.id, if_match=2))
    assert store.run(lambda tx: _marked(tx, seq)) == 0
    assert store.run(lambda tx: _index_rows(tx, seq)) == before
    assert _ids(store, "Patient", [("name", "same")]) == []
    assert _ids(store, "Patient", [("name", "other")]) == [created.id]
