"""_revinclude where _include is supported: a patient's CarePlans with their GuidanceResponses
in one search, declared in the CapabilityStatement (searchRevInclude) and the OpenAPI document."""

from typing import Any

import pytest

from service.fhir.search_params import revinclude_sources
from service.store import repository
from tests.api.helpers import entry_ids, outcome_codes

Json = dict[str, Any]


def _create(client, resource: Json) -> str:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _plan(patient: str) -> Json:
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{patient}"},
    }


def _decision(patient: str, plan: str) -> Json:
    return {
        "resourceType": "GuidanceResponse",
        "moduleUri": "https://example.org/module",
        "status": "success",
        "subject": {"reference": f"Patient/{patient}"},
        "result": {"reference": f"CarePlan/{plan}"},
    }


@pytest.fixture
def data(client) -> dict[str, str]:
    """Two patients; A has two plans with decisions and one without, B one plan with one."""
    ids = {name: _create(client, {"resourceType": "Patient"}) for name in ("pa", "pb")}
    for name, patient in (("cp1", "pa"), ("cp2", "pa"), ("cp3", "pa"), ("cp4", "pb")):
        ids[name] = _create(client, _plan(ids[patient]))
    for name, patient, plan in (
        ("gr1", "pa", "cp1"),
        ("gr2", "pa", "cp1"),
        ("gr3", "pa", "cp2"),
        ("gr4", "pb", "cp4"),
    ):
        ids[name] = _create(client, _decision(ids[patient], ids[plan]))
    return ids


def _search(client, path: str) -> Json:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_care_plans_of_a_patient_with_their_decisions(client, data):
    bundle = _search(
        client, f"/fhir/CarePlan?patient={data['pa']}&_revinclude=GuidanceResponse:result"
    )
    assert set(entry_ids(bundle)) == {data["cp1"], data["cp2"], data["cp3"]}
    assert sorted(entry_ids(bundle, "include")) == sorted([data["gr1"], data["gr2"], data["gr3"]])
    assert bundle["total"] == 3  # the matches only
    # With the target type spelled out, the same.
    typed = _search(
        client,
        f"/fhir/CarePlan?patient={data['pa']}&_revinclude=GuidanceResponse:result:CarePlan",
    )
    assert sorted(entry_ids(typed, "include")) == sorted(entry_ids(bundle, "include"))


def test_revinclude_follows_the_page(client, data):
    """Only the resources pointing at this page's matches."""
    bundle = _search(
        client, f"/fhir/CarePlan?_id={data['cp4']}&_revinclude=GuidanceResponse:result"
    )
    assert entry_ids(bundle) == [data["cp4"]]
    assert entry_ids(bundle, "include") == [data["gr4"]]


def test_revinclude_and_include_together_list_each_resource_once(client, data):
    follow_up = _create(
        client, {**_plan(data["pa"]), "basedOn": [{"reference": f"CarePlan/{data['cp1']}"}]}
    )
    bundle = _search(
        client,
        f"/fhir/CarePlan?_id={data['cp1']},{follow_up}&_include=CarePlan:subject"
        "&_revinclude=GuidanceResponse:result&_revinclude=GuidanceResponse:result"
        "&_revinclude=CarePlan:based-on",
    )
    # The follow-up plan is a match and points at one: listed once, as a match.
    assert set(entry_ids(bundle)) == {data["cp1"], follow_up}
    included = entry_ids(bundle, "include")
    assert len(included) == len(set(included))
    assert set(included) == {data["pa"], data["gr1"], data["gr2"]}


def test_a_patient_with_everything_that_points_at_them(client, data):
    bundle = _search(
        client,
        f"/fhir/Patient?_id={data['pb']}&_revinclude=CarePlan:patient"
        "&_revinclude=GuidanceResponse:subject",
    )
    assert entry_ids(bundle) == [data["pb"]]
    assert set(entry_ids(bundle, "include")) == {data["cp4"], data["gr4"]}


def test_a_deleted_resource_is_not_revincluded(client, data):
    assert client.delete(f"/fhir/GuidanceResponse/{data['gr2']}").status_code in (200, 204)
    bundle = _search(
        client, f"/fhir/CarePlan?_id={data['cp1']}&_revinclude=GuidanceResponse:result"
    )
    assert entry_ids(bundle, "include") == [data["gr1"]]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("GuidanceResponse:status", "not-supported"),  # not a reference _include supports
        ("GuidanceResponse", "not-supported"),
        ("Nothing:result", "not-supported"),
        ("CarePlan:subject", "not-supported"),  # CarePlan.subject points at no CarePlan
        ("GuidanceResponse:result:Patient", "invalid"),  # a target other than the type searched
    ],
)
def test_an_unsupported_revinclude_is_a_400(client, value, code):
    response = client.get("/fhir/CarePlan", params={"_revinclude": value})
    assert response.status_code == 400, response.text
    assert outcome_codes(response) == [code]


def test_more_than_a_page_can_hold_is_refused_not_cut_short(client, data, monkeypatch):
    monkeypatch.setattr(repository, "REVINCLUDE_LIMIT", 1)
    response = client.get(f"/fhir/CarePlan?_id={data['cp1']}&_revinclude=GuidanceResponse:result")
    assert response.status_code == 400, response.text
    assert "GuidanceResponse?result=" in response.json()["issue"][0]["diagnostics"]
    one = client.get(f"/fhir/CarePlan?_id={data['cp2']}&_revinclude=GuidanceResponse:result")
    assert one.status_code == 200


def test_declared_in_the_capability_statement_and_each_works(client, data):
    rest = client.get("/fhir/metadata").json()["rest"][0]
    declared = {r["type"]: r.get("searchRevInclude", []) for r in rest["resource"]}
    assert "GuidanceResponse:result" in declared["CarePlan"]
    assert "CarePlan:patient" in declared["Patient"]
    for resource_type, values in declared.items():
        assert values == list(revinclude_sources(resource_type))
        for value in values:
            response = client.get(f"/fhir/{resource_type}", params={"_revinclude": value})
            assert response.status_code == 200, (resource_type, value, response.text)


def test_declared_in_the_openapi_document(client):
    document = client.get("/openapi.json").json()
    search = document["paths"]["/fhir/CarePlan"]["get"]
    revinclude = next(p for p in search["parameters"] if p["name"] == "_revinclude")
    assert "GuidanceResponse:result" in revinclude["schema"]["enum"]
