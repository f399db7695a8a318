"""Nothing timed before the CarePlan's start is decided: a session (through $submit-session,
plain Observations or a transaction Bundle) or an $evaluate clock before it is a 422 and
stores nothing. The start is `period.start`, else the first version's meta.lastUpdated."""

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.helpers import store_snapshot
from tests.api.scenario import PLAN, day, eligible_patient, enrol, submit
from tests.protocol import builders as b

Json = dict[str, Any]
LONG_AGO = datetime(1900, 1, 1, 9, tzinfo=UTC)


@pytest.fixture
def plan_id(client) -> str:
    """Enrolled now, starting on the scenario's day 0 (40 days ago)."""
    eligible_patient(client)
    return enrol(client)


def _evaluate(client, plan_id: str, at: str):
    body = {"resourceType": "Parameters", "parameter": [{"name": "at", "valueDateTime": at}]}
    return client.post(f"/fhir/CarePlan/{plan_id}/$evaluate", json=body)


def _refused_before_start(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    issues = response.json()["issue"]
    assert any("before CarePlan/" in i["diagnostics"] for i in issues), issues
    return [e for i in issues for e in i.get("expression", [])]


def test_a_session_dated_1900_is_refused(client, app, plan_id):
    before = store_snapshot(app)
    expressions = _refused_before_start(submit(client, plan_id, [3, 2, 1, 1, 0], LONG_AGO))
    assert "Bundle.entry[0].resource.effective[x]" in expressions
    assert store_snapshot(app) == before


def test_the_day_before_period_start_is_refused_and_the_first_day_accepted(client, plan_id):
    _refused_before_start(submit(client, plan_id, [3, 2, 1, 1, 0], day(-1)))
    # A date alone: the start day counts wherever the patient is (00:00 at UTC+14:00).
    first_day = datetime.combine(day(0).date(), datetime.min.time(), UTC) + timedelta(hours=1)
    assert submit(client, plan_id, [3, 2, 1, 1, 0], first_day).status_code == 200


def test_a_session_of_plain_observations_before_the_start_is_refused(client, app, plan_id):
    panel, members = b.session_resources([3, 2, 1, 1, 0], LONG_AGO, care_plan_id=plan_id)
    for member in members:
        assert client.put(f"/fhir/Observation/{member['id']}", json=member).status_code == 201
    before = store_snapshot(app)
    _refused_before_start(client.put(f"/fhir/Observation/{panel['id']}", json=panel))
    assert store_snapshot(app) == before
    found = client.get(f"/fhir/GuidanceResponse?result=CarePlan/{plan_id}").json()
    assert found["total"] == 0


def test_a_session_in_a_transaction_before_the_start_is_refused(client, app, plan_id):
    transaction = copy.deepcopy(b.session_bundle([3, 2, 1, 1, 0], LONG_AGO, care_plan_id=plan_id))
    transaction["type"] = "transaction"
    for entry in transaction["entry"]:
        entry["request"] = {"method": "POST", "url": "Observation"}
    before = store_snapshot(app)
    _refused_before_start(client.post("/fhir", json=transaction))
    assert store_snapshot(app) == before


def test_evaluate_before_the_start_is_refused(client, app, plan_id):
    before = store_snapshot(app)
    expressions = _refused_before_start(_evaluate(client, plan_id, "1900-01-01T09:00:00Z"))
    assert expressions == ["at"]
    assert _evaluate(client, plan_id, f"{day(0).date().isoformat()}T12:00:00Z").status_code == 200
    assert store_snapshot(app) != before


def _enrol_without_period(client) -> Json:
    """A CarePlan enrolled now with no period: its start is when it was first stored."""
    eligible_patient(client)
    applied = client.get(f"{PLAN}/$apply?subject=Patient/{b.PATIENT_ID}").json()
    care_plan = {k: v for k, v in applied.items() if k not in ("id", "period")}
    created = client.post("/fhir/CarePlan", json=care_plan)
    assert created.status_code == 201, created.text
    return dict(created.json())


def _timed(bundle: Json, moment: str) -> Json:
    """Every time in a session Bundle set to `moment`."""
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if "effectivePeriod" in resource:
            resource["effectivePeriod"] = {"start": moment, "end": moment}
        else:
            resource["effectiveDateTime"] = moment
    return bundle


def test_without_period_start_the_plan_starts_when_it_was_first_stored(client):
    plan = _enrol_without_period(client)
    created_at = plan["meta"]["lastUpdated"]
    # A later version (a clinician's edit) does not move the start: it is the first version's.
    plan["description"] = f"{plan['description']} Edited."
    updated = client.put(f"/fhir/CarePlan/{plan['id']}", json=plan, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"
    yesterday = b.session_bundle(
        [3, 2, 1, 1, 0], datetime.now(UTC) - timedelta(days=1), care_plan_id=plan["id"]
    )
    refused = client.post(f"/fhir/CarePlan/{plan['id']}/$submit-session", json=yesterday)
    assert _refused_before_start(refused)
    assert f"first stored {created_at}" in refused.json()["issue"][0]["diagnostics"]
    bundle = b.session_bundle([3, 2, 1, 1, 0], datetime.now(UTC), care_plan_id=plan["id"])
    at_creation = _timed(bundle, created_at)
    accepted = client.post(f"/fhir/CarePlan/{plan['id']}/$submit-session", json=at_creation)
    assert accepted.status_code == 200, accepted.text


def test_the_start_of_a_plan_is_named_in_the_refusal(client, plan_id):
    response = submit(client, plan_id, [3, 2, 1, 1, 0], LONG_AGO)
    start = client.get(f"/fhir/CarePlan/{plan_id}").json()["period"]["start"]
    assert f"period.start {start}" in response.json()["issue"][0]["diagnostics"]
