"""Conditional create keys on what the criteria match, not on how they are written.

Parallel creates whose If-None-Exist criteria are written differently but match the same
resources (a result parameter added, a clause repeated, clauses or values reordered) must
make one resource, as identical criteria do (tests/usecases/test_concurrency.py). The
creates run in real threads, each in its own database transaction, as the routes do.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from service.api.errors import as_fhir_error
from service.fhir.errors import FhirError
from service.fhir.search import parse_search
from service.store.errors import StoreError
from service.store.repository import criteria_key
from service.usecases import crud
from tests.api.helpers import outcome_codes, store_snapshot

SYSTEM = "urn:cc"
EQUIVALENT = [
    f"identifier={SYSTEM}|T1",
    f"identifier={SYSTEM}|T1&_count=1",
    f"identifier={SYSTEM}|T1&identifier={SYSTEM}|T1",
    f"Patient?identifier={SYSTEM}|T1&_sort=-_lastUpdated&_summary=true",
    f"identifier={SYSTEM}|T1&_total=none&_elements=id",
    f"identifier={SYSTEM}|T1&_format=json&_pretty=true",
    f"identifier={SYSTEM}|T1&identifier={SYSTEM}|T1&identifier={SYSTEM}|T1&_count=5",
    f"identifier={SYSTEM}|T1,{SYSTEM}|T1",
]


def _patient(value: str = "T1") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": value}],
        "name": [{"family": "Race"}],
    }


def _query(criteria: str) -> Any:
    return crud.parse_if_none_exist("Patient", criteria)


def test_equivalent_criteria_share_one_key_and_others_do_not():
    keys = {criteria_key(_query(c)) for c in EQUIVALENT}
    assert len(keys) == 1
    # Clause and value order do not matter either (AND of clauses, OR of values).
    both = criteria_key(_query(f"identifier={SYSTEM}|T1,{SYSTEM}|T2&family=Race"))
    assert both == criteria_key(_query(f"family=Race&identifier={SYSTEM}|T2,{SYSTEM}|T1"))
    # What matches other resources keeps its own key.
    others = [
        f"identifier={SYSTEM}|T2",
        f"identifier={SYSTEM}|T1&family=Race",
        f"identifier={SYSTEM}|T1,{SYSTEM}|T2",
        f"identifier:not={SYSTEM}|T1",
        "identifier=T1",
    ]
    assert len({criteria_key(_query(c)) for c in others} | keys) == len(others) + 1
    observation = parse_search(
        "Observation", [("identifier", f"{SYSTEM}|T1")], default_count=2, max_count=2
    )
    assert criteria_key(observation) not in keys


def _race(work: list[Any]) -> list[Any]:
    """Run each callable in its own thread, released together; errors are returned."""
    barrier = threading.Barrier(len(work))

    def run(item: Any) -> Any:
        barrier.wait()
        try:
            return item()
        except (FhirError, StoreError) as exc:
            return as_fhir_error(exc)

    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        return list(pool.map(run, work))


def test_parallel_creates_with_equivalent_criteria_make_one_patient(client, app):
    store = app.state.store

    def create(criteria: str) -> Any:
        return lambda: store.run(lambda tx: crud.create_in(tx, _patient(), criteria, caller=None))

    results = _race([create(c) for c in EQUIVALENT])
    assert not [r for r in results if isinstance(r, FhirError)], results
    ids = {stored.id for stored, _ in results}
    assert len(ids) == 1
    assert sum(created for _, created in results) == 1
    found = client.get("/fhir/Patient", params={"identifier": f"{SYSTEM}|T1"}).json()
    assert found["total"] == 1
    # Every later conditional create, however written, answers 200 with that Patient.
    for criteria in EQUIVALENT:
        again = client.post("/fhir/Patient", json=_patient(), headers={"If-None-Exist": criteria})
        assert again.status_code == 200, again.text
        assert again.json()["id"] in ids


def test_parallel_bundle_entries_with_equivalent_criteria_make_one_patient(client, app):
    """The transaction path (ifNoneExist of a Bundle entry) keys the same way."""

    def bundle(criteria: str) -> dict[str, Any]:
        entry = {
            "fullUrl": "urn:uuid:0b5a5d4c-8c2e-4d7e-9c61-6f1b0d7b2f11",
            "resource": _patient("T9"),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": criteria},
        }
        return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}

    criteria = [c.replace("T1", "T9") for c in EQUIVALENT[:4]]
    results = [client.post("/fhir", json=bundle(c)) for c in criteria]
    assert [r.status_code for r in results] == [200] * len(criteria), results[0].text
    statuses = [r.json()["entry"][0]["response"]["status"] for r in results]
    assert statuses == ["201 Created"] + ["200 OK"] * (len(criteria) - 1)
    found = client.get("/fhir/Patient", params={"identifier": f"{SYSTEM}|T9"}).json()
    assert found["total"] == 1


@pytest.mark.parametrize("header", ["", " ", "?", "&", "_count=1"])
def test_empty_if_none_exist_is_refused(client, app, header):
    """An empty If-None-Exist is a mistake, not a request for an unconditional create."""
    before = store_snapshot(app)
    response = client.post("/fhir/Patient", json=_patient(), headers={"If-None-Exist": header})
    assert response.status_code == 400, response.text
    assert outcome_codes(response) == ["invalid"]
    assert "no search criteria" in response.text
    assert store_snapshot(app) == before


def test_empty_if_none_exist_in_a_bundle_entry_is_refused(client, app):
    before = store_snapshot(app)
    for kind in ("transaction", "batch"):
        for criteria in ("", "_count=1"):
            entry = {
                "resource": _patient(),
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": criteria},
            }
            response = client.post(
                "/fhir", json={"resourceType": "Bundle", "type": kind, "entry": [entry]}
            )
            if kind == "transaction":
                assert response.status_code == 400, response.text
            else:
                assert response.status_code == 200, response.text
                assert response.json()["entry"][0]["response"]["status"] == "400 Bad Request"
    assert store_snapshot(app) == before


def test_parallel_http_creates_and_transactions_make_one_patient(live):
    """The same race over HTTP against uvicorn: REST creates and transaction Bundles, each
    with its own spelling of the criteria, sent together."""
    criteria = [c.replace("T1", "T5") for c in EQUIVALENT]
    live_server = live.url
    headers = {"content-type": "application/fhir+json", **live.headers()}

    def rest(text: str) -> Any:
        def send() -> tuple[int, str, str]:
            response = httpx.post(
                f"{live_server}/Patient",
                json=_patient("T5"),
                headers={**headers, "If-None-Exist": text},
                timeout=60,
            )
            assert response.status_code in (200, 201), response.text
            return response.status_code, response.json()["id"], "rest"

        return send

    def bundle(text: str) -> Any:
        def send() -> tuple[int, str, str]:
            entry = {
                "resource": _patient("T5"),
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": text},
            }
            body = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
            response = httpx.post(live_server, json=body, headers=headers, timeout=60)
            assert response.status_code == 200, response.text
            answer = response.json()["entry"][0]
            status = int(answer["response"]["status"].split()[0])
            return status, answer["resource"]["id"], "bundle"

        return send

    results = _race([rest(c) for c in criteria] + [bundle(c) for c in criteria])
    assert not [r for r in results if isinstance(r, FhirError)], results
    assert len({rid for _, rid, _ in results}) == 1, results
    assert sorted(status for status, _, _ in results) == [200] * (2 * len(criteria) - 1) + [201]
    found = httpx.get(
        f"{live_server}/Patient", params={"identifier": f"{SYSTEM}|T5"}, headers=headers
    ).json()
    assert found["total"] == 1
