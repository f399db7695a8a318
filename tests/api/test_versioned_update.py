"""CarePlans and Tasks change with the service's decisions: an update must name the version it
was read at (If-Match), or a client's blind PUT of an old copy would undo a decision unseen."""

from typing import Any

import pytest

from tests.api.helpers import if_match, outcome_codes, store_snapshot
from tests.api.scenario import day, decision_codes, eligible_patient, enrol, submit

TASK = {"resourceType": "Task", "status": "draft", "intent": "proposal"}


def _flexion_status(plan: dict[str, Any]) -> str:
    return str(plan["activity"][0]["detail"]["status"])


def test_a_blind_put_cannot_undo_the_services_decision(client, app):
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    copy = client.get(f"/fhir/CarePlan/{plan_id}").json()  # an app reads the plan ...
    stop = submit(client, plan_id, [3, 2, 1, 1, 0], day(1), location_end="below-knee")
    assert decision_codes(stop.json())[0] == "stop-and-refer"  # ... the service stops it ...
    stopped = client.get(f"/fhir/CarePlan/{plan_id}").json()
    assert _flexion_status(stopped) == "stopped"
    assert _flexion_status(copy) != "stopped"

    # ... and the app saves its old copy back.
    before = store_snapshot(app)
    blind = client.put(f"/fhir/CarePlan/{plan_id}", json=copy)
    assert blind.status_code == 428, blind.text
    assert outcome_codes(blind) == ["required"]
    assert "If-Match" in blind.json()["issue"][0]["diagnostics"]
    stale = client.put(f"/fhir/CarePlan/{plan_id}", json=copy, headers=if_match(copy))
    assert stale.status_code == 412, stale.text
    assert store_snapshot(app) == before
    assert _flexion_status(client.get(f"/fhir/CarePlan/{plan_id}").json()) == "stopped"

    # Read again, change what the clinician meant to change, send the version read: accepted.
    stopped["note"] = [{"text": "reviewed by the physiotherapist"}]
    updated = client.put(f"/fhir/CarePlan/{plan_id}", json=stopped, headers=if_match(stopped))
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == str(int(stopped["meta"]["versionId"]) + 1)


def test_task_updates_need_if_match_and_are_not_created_by_put(client, app):
    task = client.post("/fhir/Task", json=TASK).json()
    changed = {**task, "status": "cancelled"}
    before = store_snapshot(app)
    assert client.put(f"/fhir/Task/{task['id']}", json=changed).status_code == 428
    new = client.put("/fhir/Task/chosen-id", json={**TASK, "id": "chosen-id"})
    assert new.status_code == 428, new.text
    assert store_snapshot(app) == before
    ok = client.put(f"/fhir/Task/{task['id']}", json=changed, headers=if_match(task))
    assert ok.status_code == 200, ok.text


def test_bundle_updates_need_if_match(client, app):
    task = client.post("/fhir/Task", json=TASK).json()
    changed = {**task, "status": "cancelled"}
    blind = {"request": {"method": "PUT", "url": f"Task/{task['id']}"}, "resource": changed}
    before = store_snapshot(app)

    transaction = client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [blind]}
    )
    assert transaction.status_code == 428, transaction.text
    issue = transaction.json()["issue"][0]
    assert issue["code"] == "required"
    assert issue["expression"] == ["Bundle.entry[0].request.ifMatch"]

    batch = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [blind]})
    assert batch.status_code == 200, batch.text
    response = batch.json()["entry"][0]["response"]
    assert response["status"] == "428 Precondition Required"
    assert response["outcome"]["issue"][0]["expression"] == ["Bundle.entry[0].request.ifMatch"]
    assert store_snapshot(app) == before

    versioned = {**blind, "request": {**blind["request"], "ifMatch": 'W/"1"'}}
    done = client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [versioned]}
    )
    assert done.status_code == 200, done.text
    assert done.json()["entry"][0]["response"]["etag"] == 'W/"2"'


def test_the_capability_statement_says_which_updates_need_if_match(client):
    """R4 versioning "versioned-update": the version must be correct for updates (If-Match);
    "versioned": versions are kept and If-Match is honoured when sent. What it declares holds."""
    resources = client.get("/fhir/metadata").json()["rest"][0]["resource"]
    policy = {r["type"]: r["versioning"] for r in resources}
    assert {t for t, v in policy.items() if v == "versioned-update"} == {"CarePlan", "Task"}
    assert set(policy.values()) == {"versioned", "versioned-update"}
    for entry in resources:
        if entry["versioning"] == "versioned-update":
            assert entry["updateCreate"] is False
            assert "If-Match" in entry["documentation"]
    # Behaviour: a blind update of a "versioned" type is accepted, of the others refused.
    for resource_type, body in [("CarePlan", None), ("Task", TASK), ("Condition", None)]:
        body = body or {
            "resourceType": resource_type,
            "subject": {"reference": "Patient/p"},
            **({"status": "draft", "intent": "plan"} if resource_type == "CarePlan" else {}),
        }
        created = client.post(f"/fhir/{resource_type}", json=body).json()
        blind = client.put(f"/fhir/{resource_type}/{created['id']}", json=created)
        expected = 428 if policy[resource_type] == "versioned-update" else 200
        assert blind.status_code == expected, (resource_type, blind.text)


@pytest.mark.parametrize("resource_type", ["CarePlan", "Task"])
def test_openapi_marks_if_match_required(client, resource_type):
    operation = client.get("/openapi.json").json()["paths"][f"/fhir/{resource_type}/{{id}}"]["put"]
    header = next(p for p in operation["parameters"] if p["name"] == "If-Match")
    assert header["required"] is True
    assert "428" in operation["responses"]
    patient = client.get("/openapi.json").json()["paths"]["/fhir/Patient/{id}"]["put"]
    assert not next(p for p in patient["parameters"] if p["name"] == "If-Match")["required"]
