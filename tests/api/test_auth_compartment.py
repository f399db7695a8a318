"""A ``patient/`` token sees its patient's compartment only, over HTTP: another patient's
resources read as 404, searches (with their totals and pages) never return them, ``_include``
and history leave them out, and writes that would reach them change nothing. The tokens are
signed by an external issuer the service trusts (an EHR), which sets the ``patient`` claim."""

from typing import Any

import pytest

from tests.api.conftest import as_ehr
from tests.api.helpers import outcome_codes, pain_observation, store_snapshot
from tests.api.scenario import PLAN
from tests.conftest import FhirClient


def _ann(scope: str = "patient/*.cruds") -> dict[str, str]:
    return as_ehr(scope, patient="ann")


@pytest.fixture
def two_patients(ehr_client: FhirClient) -> dict[str, str]:
    """Ann and Bob, each with two pain scores, a CarePlan; Ann's panel lists one of Bob's
    scores as a member (a wrong link a client could make)."""
    ids: dict[str, str] = {}
    for name in ("ann", "bob"):
        put = ehr_client.put(
            f"/fhir/Patient/{name}",
            json={"resourceType": "Patient", "id": name, "name": [{"family": name.title()}]},
        )
        assert put.status_code == 201
        for n in (1, 2):
            created = ehr_client.post(
                "/fhir/Observation", json=pain_observation(f"Patient/{name}", n)
            )
            ids[f"{name}-obs-{n}"] = created.json()["id"]
        plan = {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{name}"},
        }
        ids[f"{name}-plan"] = ehr_client.post("/fhir/CarePlan", json=plan).json()["id"]
    panel = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": "panel"}]},
        "subject": {"reference": "Patient/ann"},
        "hasMember": [
            {"reference": f"Observation/{ids['ann-obs-1']}"},
            {"reference": f"Observation/{ids['bob-obs-1']}"},
        ],
    }
    ids["ann-panel"] = ehr_client.post("/fhir/Observation", json=panel).json()["id"]
    return ids


def _not_found(response: Any) -> None:
    assert response.status_code == 404, response.text
    assert outcome_codes(response) == ["not-found"]


def test_another_patients_resources_read_as_404(
    ehr_client: FhirClient, two_patients: dict[str, str]
) -> None:
    mine = ehr_client.get(f"/fhir/Observation/{two_patients['ann-obs-1']}", headers=_ann())
    assert mine.status_code == 200
    assert ehr_client.get("/fhir/Patient/ann", headers=_ann()).status_code == 200
    bobs = two_patients["bob-obs-1"]
    for path in (
        f"/fhir/Observation/{bobs}",
        f"/fhir/Observation/{bobs}/_history/1",
        f"/fhir/Observation/{bobs}/_history",
        "/fhir/Patient/bob",
        f"/fhir/CarePlan/{two_patients['bob-plan']}",
        f"{PLAN}/$apply?subject=Patient/bob",
    ):
        _not_found(ehr_client.get(path, headers=_ann()))


def test_a_patient_scope_without_a_patient_claim_grants_nothing(
    ehr_client: FhirClient, two_patients: dict[str, str]
) -> None:
    response = ehr_client.get("/fhir/Observation", headers=as_ehr("patient/*.cruds"))
    assert response.status_code == 403


def test_searches_never_return_another_patients_resources(
    ehr_client: FhirClient, two_patients: dict[str, str]
) -> None:
    found = ehr_client.get("/fhir/Observation", headers=_ann()).json()
    ann_obs = {two_patients["ann-obs-1"], two_patients["ann-obs-2"], two_patients["ann-panel"]}
    assert {e["resource"]["id"] for e in found["entry"]} == ann_obs
    assert found["total"] == 3
    asked_for_bob = ehr_client.get("/fhir/Observation?subject=Patient/bob", headers=_ann())
    assert asked_for_bob.json()["total"] == 0
    patients = ehr_client.get("/fhir/Patient", headers=_ann()).json()
    assert [e["resource"]["id"] for e in patients["entry"]] == ["ann"]
    counted = ehr_client.get("/fhir/CarePlan?_summary=count", headers=_ann()).json()
    assert counted["total"] == 1


def test_pages_hold_only_the_patients_resources(
    ehr_client: FhirClient, two_patients: dict[str, str]
) -> None:
    seen: list[str] = []
    url: str | None = "/fhir/Observation?_count=1"
    while url:
        page = ehr_client.get(url, headers=_ann()).json()
        assert page["total"] == 3
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == sorted(
        [two_patients["ann-obs-1"], two_patients["ann-obs-2"], two_patients["ann-panel"]]
    )


def test_included_resources_of_another_patient_are_left_out(
    ehr_client: FhirClient, two_patients: dict[str, str]
) -> None:
    url = f"/fhir/Observation?_id={two_patients['ann-panel']}&_include=Observation:has-member"
    everything = ehr_client.get(url).json()  # the system token sees both members
    assert len(everything["entry"]) == 3
    bundle = ehr_client.get(url, headers=_ann()).json()
    ids = {e["resource"]["id"] for e in bundle["entry"]}
    assert ids == {two_patients["ann-panel"], two_patients["ann-obs-1"]}


def test_history_leaves_out_other_patients(
    ehr_client: FhirClient, two_patients: dict[str, str]
) -> None:
    # A deletion shows for whoever could see what it deleted.
    assert ehr_client.delete(f"/fhir/Observation/{two_patients['ann-obs-2']}").status_code == 204
    assert ehr_client.delete(f"/fhir/Observation/{two_patients['bob-obs-2']}").status_code == 204
    for path in ("/fhir/_history", "/fhir/Observation/_history"):
        history = ehr_client.get(path, headers=_ann()).json()
        urls = [e["fullUrl"] for e in history["entry"]]
        assert urls, path
        assert not any(
            two_patients[key] in url for url in urls for key in ("bob-obs-1", "bob-obs-2")
        )
        assert not any(url.endswith("/Patient/bob") for url in urls)
        deletions = [e for e in history["entry"] if e["request"]["method"] == "DELETE"]
        assert [e["fullUrl"].rsplit("/", 1)[1] for e in deletions] == [two_patients["ann-obs-2"]]
    paged = ehr_client.get("/fhir/_history?_count=2", headers=_ann()).json()
    assert len(paged["entry"]) == 2
    assert any(link["relation"] == "next" for link in paged["link"])


def test_writes_that_reach_another_patient_change_nothing(
    ehr_client: FhirClient, ehr_app: Any, two_patients: dict[str, str]
) -> None:
    before = store_snapshot(ehr_app)
    bobs_id = two_patients["bob-obs-1"]
    taken = {**pain_observation("Patient/ann", 9), "id": bobs_id}
    assert (
        ehr_client.put(f"/fhir/Observation/{bobs_id}", json=taken, headers=_ann()).status_code
        == 403
    )
    mine = two_patients["ann-obs-1"]
    given = {**pain_observation("Patient/bob", 9), "id": mine}
    assert (
        ehr_client.put(f"/fhir/Observation/{mine}", json=given, headers=_ann()).status_code == 403
    )
    created = ehr_client.post(
        "/fhir/Observation", json=pain_observation("Patient/bob", 1), headers=_ann()
    )
    assert created.status_code == 403
    assert ehr_client.delete(f"/fhir/Observation/{bobs_id}", headers=_ann()).status_code == 403
    post = {"method": "POST", "url": "Observation"}
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": pain_observation("Patient/ann", 2), "request": post},
            {"resource": pain_observation("Patient/bob", 2), "request": post},
        ],
    }
    refused = ehr_client.post("/fhir", json=transaction, headers=_ann())
    assert refused.status_code == 403
    assert store_snapshot(ehr_app) == before
    own = ehr_client.post(
        "/fhir/Observation", json=pain_observation("Patient/ann", 1), headers=_ann()
    )
    assert own.status_code == 201


def test_a_batch_read_of_another_patient_is_404(
    ehr_client: FhirClient, two_patients: dict[str, str]
) -> None:
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Observation/{two_patients['ann-obs-1']}"}},
            {"request": {"method": "GET", "url": f"Observation/{two_patients['bob-obs-1']}"}},
            {"request": {"method": "GET", "url": "Observation?subject=Patient/bob"}},
        ],
    }
    answer = ehr_client.post("/fhir", json=batch, headers=_ann()).json()
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["200 OK", "404 Not Found", "200 OK"]
    assert answer["entry"][2]["resource"]["total"] == 0


def test_a_patient_token_submits_sessions_only_for_its_patient(
    ehr_client: FhirClient, ehr_app: Any, two_patients: dict[str, str]
) -> None:
    before = store_snapshot(ehr_app)
    url = f"/fhir/CarePlan/{two_patients['bob-plan']}/$evaluate"
    assert ehr_client.post(url, headers=_ann()).status_code == 403
    assert store_snapshot(ehr_app) == before


def test_naming_the_patient_as_performer_does_not_make_anothers_record_its_own(
    ehr_client: FhirClient, ehr_app: Any, two_patients: dict[str, str]
) -> None:
    """A write in Ann's context must be Ann's record: a subject of Bob's with Ann as the
    performer (in Ann's compartment for reading) is refused, and nothing changes."""
    before = store_snapshot(ehr_app)
    observation = pain_observation("Patient/bob", 3) | {"performer": [{"reference": "Patient/ann"}]}
    refused = ehr_client.post("/fhir/Observation", json=observation, headers=_ann())
    assert refused.status_code == 403, refused.text
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/bob"},
        "activity": [
            {"detail": {"status": "scheduled", "performer": [{"reference": "Patient/ann"}]}}
        ],
    }
    assert ehr_client.post("/fhir/CarePlan", json=plan, headers=_ann()).status_code == 403
    assert store_snapshot(ehr_app) == before


def test_if_none_exist_does_not_reveal_another_patients_resources(
    ehr_client: FhirClient, ehr_app: Any, two_patients: dict[str, str]
) -> None:
    """Bob's Observation matches the criteria, but Ann's token cannot see it: the conditional
    create behaves as if there were no match (a 403 or 412 would tell Ann it exists)."""
    marked = pain_observation("Patient/bob", 4) | {
        "identifier": [{"system": "urn:test", "value": "secret-1"}]
    }
    assert ehr_client.post("/fhir/Observation", json=marked).status_code == 201
    mine = pain_observation("Patient/ann", 4)
    headers = _ann() | {"If-None-Exist": "identifier=urn:test|secret-1"}
    created = ehr_client.post("/fhir/Observation", json=mine, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["subject"] == {"reference": "Patient/ann"}


def test_a_patient_token_cannot_read_the_audit_trail(
    ehr_client: FhirClient, two_patients: dict[str, str]
) -> None:
    """The trail names other patients, clients and addresses: system or user scopes only."""
    refused = ehr_client.get("/fhir/AuditEvent", headers=_ann("patient/*.rs"))
    assert refused.status_code == 403, refused.text
    assert (
        ehr_client.get("/fhir/AuditEvent", headers=_ann("patient/AuditEvent.rs")).status_code == 403
    )
