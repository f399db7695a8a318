"""Scopes over HTTP: each interaction and operation needs its letters (403
``insufficient_scope`` and nothing changed without them), batch and transaction entries are
each checked, definitional resources are readable by any token, ``_include`` leaves out what the
token may not read, and a ``?code=`` restriction narrows reads and searches and refuses writes
outside it. Tokens come from the built-in server, each client registered for its scopes."""

from typing import Any

import pytest

from service.auth.permissions import DEFINITIONAL_TYPES
from tests.api.helpers import outcome_codes, pain_observation, patient, store_snapshot
from tests.api.scenario import PLAN, day, eligible_patient, enrol
from tests.conftest import FhirClient
from tests.protocol import builders as b

PAIN = "http://loinc.org|72514-3"


def _forbidden(response: Any, need: str | None = None) -> None:
    assert response.status_code == 403, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    if need is not None:
        assert f"system/{need}" in challenge
    assert outcome_codes(response) == ["forbidden"]


def _as(client: FhirClient, scope: str) -> dict[str, str]:
    return client.tokens.header(scope)


@pytest.fixture
def stored(client: FhirClient) -> dict[str, str]:
    """A patient and one of their pain scores."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    oid = client.post("/fhir/Observation", json=pain_observation(f"Patient/{pid}", 3)).json()["id"]
    return {"patient": pid, "observation": oid}


ONE = "/fhir/Patient/{patient}"
INTERACTIONS = [
    # (what, method, path, body?, the scope the token has, the need it lacks)
    ("read", "GET", ONE, False, "system/Patient.cuds", "Patient.r"),
    ("vread", "GET", f"{ONE}/_history/1", False, "system/Patient.cuds", "Patient.r"),
    ("search", "GET", "/fhir/Patient?name=Smith", False, "system/Patient.crud", "Patient.s"),
    ("search (POST)", "POST", "/fhir/Patient/_search", False, "system/Patient.crud", "Patient.s"),
    ("type history", "GET", "/fhir/Patient/_history", False, "system/Patient.crud", "Patient.s"),
    ("history", "GET", f"{ONE}/_history", False, "system/Patient.crud", "Patient.s"),
    ("create", "POST", "/fhir/Patient", True, "system/Patient.ruds", "Patient.c"),
    ("update", "PUT", ONE, True, "system/Patient.crds", "Patient.u"),
    ("delete", "DELETE", ONE, False, "system/Patient.crus", "Patient.d"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "scope", "need"),
    [case[1:] for case in INTERACTIONS],
    ids=[case[0] for case in INTERACTIONS],
)
def test_each_interaction_needs_its_letter(
    client: FhirClient,
    app: Any,
    stored: dict[str, str],
    method: str,
    path: str,
    body: bool,
    scope: str,
    need: str,
) -> None:
    url = path.format(**stored)
    content = {**patient(), "id": stored["patient"]} if body else None
    before = store_snapshot(app)
    headers = _as(client, scope)
    if method == "POST" and url.endswith("_search"):
        response = client.post(
            url, headers={**headers, "content-type": "application/x-www-form-urlencoded"}
        )
    else:
        response = client.request(method, url, json=content, headers=headers)
    _forbidden(response, need)
    assert store_snapshot(app) == before
    # The same request with the letter added goes through.
    letters = "".join(sorted({*scope.split(".")[1], need[-1]}, key="cruds".index))
    allowed = client.request(
        method,
        url,
        json=content,
        headers={
            **_as(client, f"system/Patient.{letters}"),
            **(
                {"content-type": "application/x-www-form-urlencoded"}
                if url.endswith("_search")
                else {}
            ),
        },
    )
    assert allowed.status_code < 300, allowed.text


def test_v1_scopes_read_and_write(client: FhirClient, stored: dict[str, str]) -> None:
    read = _as(client, "system/Patient.read")
    assert client.get(f"/fhir/Patient/{stored['patient']}", headers=read).status_code == 200
    assert client.get("/fhir/Patient", headers=read).status_code == 200
    _forbidden(client.post("/fhir/Patient", json=patient(), headers=read), "Patient.c")
    write = _as(client, "system/Patient.write")
    assert client.post("/fhir/Patient", json=patient(), headers=write).status_code == 201
    _forbidden(client.get("/fhir/Patient", headers=write), "Patient.s")


def test_definitional_resources_are_readable_by_any_token(client: FhirClient) -> None:
    headers = _as(client, "system/Observation.r")
    assert client.get(PLAN, headers=headers).status_code == 200
    found = client.get("/fhir/Questionnaire", headers=headers)
    assert found.status_code == 200 and found.json()["total"] == 2
    assert client.get("/fhir/CodeSystem/flexion-careplan", headers=headers).status_code == 200
    _forbidden(client.get("/fhir/Patient", headers=headers), "Patient.s")
    _forbidden(client.put(PLAN, json=client.get(PLAN).json(), headers=headers), "PlanDefinition.u")


def test_operations_declare_their_needs(client: FhirClient, app: Any) -> None:
    eligible_patient(client, day(0))  # eligible since the scenario's day 0, enrolled now
    patient_id = eligible_patient(client)
    plan_id = enrol(client, patient_id)
    before = store_snapshot(app)
    # $submit-session: CarePlan u and Observation c
    session = b.session_bundle([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    submit_url = f"/fhir/CarePlan/{plan_id}/$submit-session"
    only_plan = _as(client, "system/CarePlan.u")
    _forbidden(client.post(submit_url, json=session, headers=only_plan), "Observation.c")
    # $evaluate: CarePlan u
    evaluate = client.post(
        f"/fhir/CarePlan/{plan_id}/$evaluate", headers=_as(client, "system/CarePlan.rs")
    )
    _forbidden(evaluate, "CarePlan.u")
    # $apply: PlanDefinition r (any token) and Patient r
    apply_url = f"{PLAN}/$apply?subject=Patient/{patient_id}"
    _forbidden(client.get(apply_url, headers=_as(client, "system/CarePlan.r")), "Patient.r")
    assert store_snapshot(app) == before
    assert client.get(apply_url, headers=_as(client, "system/Patient.r")).status_code == 200
    both = _as(client, "system/CarePlan.u system/Observation.c")
    assert client.post(submit_url, json=session, headers=both).status_code == 200


def _transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _post(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def test_a_transaction_with_one_forbidden_entry_changes_nothing(
    client: FhirClient, app: Any, stored: dict[str, str]
) -> None:
    bundle = _transaction(
        _post(patient(family="Allowed")),
        _post(pain_observation(f"Patient/{stored['patient']}", 2)),
    )
    before = store_snapshot(app)
    _forbidden(client.post("/fhir", json=bundle, headers=_as(client, "system/Patient.c")))
    assert store_snapshot(app) == before
    allowed = _as(client, "system/Patient.c system/Observation.c")
    assert client.post("/fhir", json=bundle, headers=allowed).status_code == 200


def test_each_batch_entry_is_checked_on_its_own(client: FhirClient, stored: dict[str, str]) -> None:
    bundle = _transaction(
        {"request": {"method": "GET", "url": f"Patient/{stored['patient']}"}},
        _post(patient(family="Refused")),
        {"request": {"method": "GET", "url": f"Observation/{stored['observation']}"}},
        kind="batch",
    )
    answer = client.post("/fhir", json=bundle, headers=_as(client, "system/Patient.r"))
    assert answer.status_code == 200
    statuses = [entry["response"]["status"] for entry in answer.json()["entry"]]
    assert statuses == ["200 OK", "403 Forbidden", "403 Forbidden"]
    refused = answer.json()["entry"][1]["response"]["outcome"]
    assert refused["issue"][0]["code"] == "forbidden"


def test_included_resources_the_token_may_not_read_are_left_out(
    client: FhirClient, stored: dict[str, str]
) -> None:
    url = "/fhir/Observation?_include=Observation:subject"
    without_patient = client.get(url, headers=_as(client, "system/Observation.rs")).json()
    assert [e["resource"]["resourceType"] for e in without_patient["entry"]] == ["Observation"]
    with_patient = client.get(url, headers=_as(client, "system/Observation.rs system/Patient.r"))
    kinds = sorted(e["resource"]["resourceType"] for e in with_patient.json()["entry"])
    assert kinds == ["Observation", "Patient"]


def test_system_history_shows_only_the_types_the_token_may_search(
    client: FhirClient, stored: dict[str, str]
) -> None:
    everything = {
        e["request"]["url"].split("/")[0] for e in client.get("/fhir/_history").json()["entry"]
    }
    assert {"Patient", "Observation", "PlanDefinition"} <= everything
    shown = client.get("/fhir/_history", headers=_as(client, "system/Observation.s")).json()
    types = {e["request"]["url"].split("/")[0] for e in shown["entry"]}
    # Definitional resources are readable by any token; Patient is not this token's.
    assert "Observation" in types and "Patient" not in types
    assert types - {"Observation"} <= DEFINITIONAL_TYPES
    assert "total" not in shown  # it would count what the token may not see


# --- a scope restricted by ?code= -----------------------------------------------------------------


@pytest.fixture
def restricted(client: FhirClient, stored: dict[str, str]) -> dict[str, Any]:
    note = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": "note"}]},
        "subject": {"reference": f"Patient/{stored['patient']}"},
        "valueString": "private",
    }
    note_id = client.post("/fhir/Observation", json=note).json()["id"]
    headers = _as(client, f"system/Observation.crs?code={PAIN}")
    return {**stored, "note": note_id, "note_body": note, "headers": headers}


def test_a_restricted_scope_narrows_reads_and_searches(
    client: FhirClient, restricted: dict[str, Any]
) -> None:
    headers = restricted["headers"]
    found = client.get("/fhir/Observation", headers=headers).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [restricted["observation"]]
    assert found["total"] == 1
    counted = client.get("/fhir/Observation?_summary=count", headers=headers).json()
    assert counted["total"] == 1
    assert (
        client.get(f"/fhir/Observation/{restricted['observation']}", headers=headers).status_code
        == 200
    )
    hidden = client.get(f"/fhir/Observation/{restricted['note']}", headers=headers)
    assert hidden.status_code == 404
    assert outcome_codes(hidden) == ["not-found"]


def test_a_restricted_scope_refuses_writes_outside_it(
    client: FhirClient, app: Any, restricted: dict[str, Any]
) -> None:
    headers = restricted["headers"]
    before = store_snapshot(app)
    _forbidden(client.post("/fhir/Observation", json=restricted["note_body"], headers=headers))
    assert store_snapshot(app) == before
    pain = pain_observation(f"Patient/{restricted['patient']}", 4)
    assert client.post("/fhir/Observation", json=pain, headers=headers).status_code == 201
