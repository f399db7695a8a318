"""Pain scores sent as valueInteger (as many EHRs and apps send them) wherever the service reads
one: $submit-session, a session as plain Observations, daily pain for $apply's eligibility, and
the 0-10 check of every Observation write. What is unusable is refused with what was wrong."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.helpers import store_snapshot
from tests.api.scenario import PLAN, day, decision_codes, enrol, patient_with_state, put
from tests.protocol import builders as b

Json = dict[str, Any]


def as_integer(observation: Json) -> Json:
    """The same pain score as valueInteger instead of a {score} valueQuantity."""
    changed = {k: v for k, v in observation.items() if k != "valueQuantity"}
    if "valueQuantity" in observation:
        changed["valueInteger"] = observation["valueQuantity"]["value"]
    return changed


def integer_state(clock: datetime) -> list[Json]:
    """An eligible patient whose daily pain scores are all integers."""
    return [
        b.episode_phase(clock - timedelta(days=20), "recovering"),
        b.red_flag_screen(clock - timedelta(days=2)),
        *(as_integer(o) for o in b.pain_days(clock, [0] * 14)),
    ]


@pytest.fixture
def plan_id(client) -> str:
    patient_with_state(client, integer_state(datetime.now(UTC)))
    return enrol(client)


def test_integer_daily_pain_makes_apply_eligible(client):
    patient_with_state(client, integer_state(datetime.now(UTC)))
    applied = client.get(f"{PLAN}/$apply?subject=Patient/{b.PATIENT_ID}")
    assert applied.status_code == 200, applied.text
    care_plan = applied.json()
    assert care_plan["status"] == "active", care_plan["activity"][0]["detail"]
    assert care_plan["activity"][0]["detail"]["status"] == "scheduled"


def test_integer_daily_pain_is_stored_and_read_back(client):
    put(client, b.patient())
    observation = as_integer(b.daily_pain(datetime.now(UTC) - timedelta(hours=1), 3))
    created = client.post("/fhir/Observation", json=observation)
    assert created.status_code == 201, created.text
    assert created.json()["valueInteger"] == 3


def test_submit_session_with_integer_repetitions(client, plan_id):
    bundle = b.session_bundle([1, 2, 4, 6], day(1), care_plan_id=plan_id)
    for entry in bundle["entry"][1:]:
        entry["resource"] = as_integer(entry["resource"])
    response = client.post(f"/fhir/CarePlan/{plan_id}/$submit-session", json=bundle)
    assert response.status_code == 200, response.text
    assert decision_codes(response.json())[:2] == ["hold-back", "R4"]


def test_session_of_integer_plain_observations_is_decided(client, plan_id):
    panel, members = b.session_resources([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    for member in members:
        stored = client.put(f"/fhir/Observation/{member['id']}", json=as_integer(member))
        assert stored.status_code == 201, stored.text
    assert client.put(f"/fhir/Observation/{panel['id']}", json=panel).status_code == 201
    found = client.get(f"/fhir/GuidanceResponse?result=CarePlan/{plan_id}").json()
    assert found["total"] == 1
    guidance = found["entry"][0]["resource"]
    assert [c["code"] for rc in guidance["reasonCode"] for c in rc["coding"]][:2] == [
        "continue",
        "R9",
    ]


@pytest.mark.parametrize(
    ("value", "expression", "says"),
    [
        ({"valueInteger": 11}, "Observation.valueInteger", "outside 0-10"),
        ({"valueString": "3"}, "Observation.valueString", "not valueString"),
        (
            {
                "valueQuantity": {
                    "value": 30,
                    "unit": "mm",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm",
                }
            },
            "Observation.valueQuantity",
            "'mm'",
        ),
        ({}, "Observation.value[x]", "missing"),
    ],
)
def test_an_unusable_pain_score_is_refused_with_what_was_wrong(
    client, app, value, expression, says
):
    put(client, b.patient())
    observation = b.daily_pain(datetime.now(UTC) - timedelta(hours=1), 3)
    del observation["valueQuantity"]
    before = store_snapshot(app)
    response = client.post("/fhir/Observation", json={**observation, **value})
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [expression]
    assert says in issue["diagnostics"]
    assert store_snapshot(app) == before


def test_a_session_repetition_as_a_string_names_its_element(client, plan_id):
    bundle = b.session_bundle([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    repetition = bundle["entry"][2]["resource"]
    del repetition["valueQuantity"]
    repetition["valueString"] = "two"
    response = client.post(f"/fhir/CarePlan/{plan_id}/$submit-session", json=bundle)
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[2].resource.valueString"]
    assert "valueInteger" in issue["diagnostics"]
