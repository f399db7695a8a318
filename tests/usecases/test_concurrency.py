"""Races: parallel identical conditional creates and parallel PUTs with one If-Match.

The TestClient runs one request at a time, so these tests call the repository from real
threads, each unit of work in its own database transaction, exactly as the routes do.
"""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from service.api.errors import as_fhir_error
from service.fhir.errors import FhirError
from service.store.errors import StoreError
from service.store.tables import resource, resource_history
from service.usecases import crud
from tests.api.helpers import patient

N = 10
S = "urn:oid:1.2.36.146.595.217.0.1"


def _race(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; exceptions are returned."""
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        try:
            return work(i)
        except (FhirError, StoreError) as exc:
            return as_fhir_error(exc)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def _rows(app, table: sa.Table, resource_type: str, resource_id: str | None = None) -> int:
    where = [table.c.res_type == resource_type]
    if resource_id:
        where.append(table.c.res_id == resource_id)
    with app.state.store.engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).select_from(table).where(*where)
        ).scalar_one()


def test_parallel_conditional_creates_make_one_resource(client, app):
    store = app.state.store
    criteria = f"identifier={S}|race-1"

    def create(_i: int) -> tuple[str, bool]:
        stored, created = store.run(
            lambda tx: crud.create_in(tx, patient(mrn="race-1"), criteria, caller=None)
        )
        return stored.id, created

    results = _race(N, create)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({rid for rid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert _rows(app, resource, "Patient") == 1
    assert _rows(app, resource_history, "Patient") == 1
    found = client.get("/fhir/Patient", params={"identifier": f"{S}|race-1"}).json()
    assert found["total"] == 1
    # And afterwards over HTTP: still the same one.
    again = client.post(
        "/fhir/Patient", json=patient(mrn="race-1"), headers={"If-None-Exist": criteria}
    )
    assert again.status_code == 200
    assert again.json()["id"] == results[0][0]


def test_parallel_conditional_creates_with_different_criteria_all_create(client, app):
    store = app.state.store

    def create(i: int) -> tuple[str, bool]:
        body = patient(mrn=f"own-{i}")
        stored, created = store.run(
            lambda tx: crud.create_in(tx, body, f"identifier={S}|own-{i}", caller=None)
        )
        return stored.id, created

    results = _race(N, create)
    assert all(created for _, created in results), results
    assert len({rid for rid, _ in results}) == N
    assert _rows(app, resource, "Patient") == N


def test_parallel_puts_with_one_if_match(client, app):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    store = app.state.store

    def put(i: int) -> int:
        body = {**patient(f"Writer{i}"), "id": pid}
        stored, _ = store.run(lambda tx: crud.update_in(tx, body, pid, 1, caller=None))
        return stored.version

    results = _race(N, put)
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, FhirError)]
    assert winners == [2]
    assert len(losers) == N - 1
    assert {e.status for e in losers} == {412}
    assert {e.issues[0].code for e in losers} == {"conflict"}
    current = client.get(f"/fhir/Patient/{pid}")
    assert current.headers["etag"] == 'W/"2"'
    assert _rows(app, resource_history, "Patient", pid) == 2


def test_parallel_puts_without_if_match_lose_no_update(client, app):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    store = app.state.store

    def put(i: int) -> int:
        body = {**patient(f"Writer{i}"), "id": pid}
        stored, _ = store.run(lambda tx: crud.update_in(tx, body, pid, None, caller=None))
        return stored.version

    versions = _race(N, put)
    assert sorted(versions) == list(range(2, N + 2)), versions
    history = client.get(f"/fhir/Patient/{pid}/_history", params={"_count": "50"}).json()
    assert [e["response"]["etag"] for e in history["entry"]] == [
        f'W/"{v}"' for v in range(N + 1, 0, -1)
    ]
    last = history["entry"][0]["resource"]["name"][0]["family"]
    assert client.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == last


def test_parallel_creates_and_deletes(client, app):
    """Creates, deletes and reads in parallel: every unit commits or fails cleanly."""
    ids = [client.post("/fhir/Patient", json=patient(f"D{i}")).json()["id"] for i in range(N)]
    store = app.state.store

    def work(i: int) -> Any:
        if i % 2:
            return store.run(lambda tx: crud.delete_in(tx, "Patient", ids[i], caller=None))
        return store.run(lambda tx: crud.create_in(tx, patient(f"N{i}"), caller=None))

    results = _race(N, work)
    assert not [r for r in results if isinstance(r, Exception)], results
    remaining = client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]
    assert remaining == N - N // 2 + N // 2
