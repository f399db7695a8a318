"""Protocol version 1.1.0 through HTTP: published beside 1.0.0, offered by $apply without a
version, plans keep the version they instantiate, C5 and C8 at the use case, and the replay of
a 1.0.0 history under 1.0.0 (no change) and under 1.1.0 (the changes listed). Every response
passes the independent R4 validator (the client fixture)."""

from typing import Any

from service.cli import main as cli
from service.protocol.codes import PLAN_DEFINITION_URL
from service.settings import get_settings
from service.usecases.knowledge import load_definitions, shipped_definitions
from service.usecases.replay import replay
from tests.api.scenario import (
    PLAN,
    created,
    day,
    decision_codes,
    eligible_patient,
    enrol,
    part,
    patient_with_state,
    submit,
)
from tests.protocol import builders as b

TOLERATED = [2, 1, 1, 0, 0]


def _enrol_newest(client: Any, patient_id: str = b.PATIENT_ID) -> str:
    """Enrol through the type-level $apply with the canonical url and no version."""
    applied = client.get(
        f"/fhir/PlanDefinition/$apply?url={PLAN_DEFINITION_URL}&subject=Patient/{patient_id}"
    )
    assert applied.status_code == 200, applied.text
    care_plan = {k: v for k, v in applied.json().items() if k != "id"}
    care_plan["period"] = {"start": day(0).date().isoformat()}
    enrolled = client.post("/fhir/CarePlan", json=care_plan)
    assert enrolled.status_code == 201, enrolled.text
    return str(enrolled.json()["id"])


def _module(answer: dict[str, Any]) -> str:
    return str(part(answer, "decision")["moduleCanonical"])


def test_1_1_0_is_published_beside_1_0_0_and_loading_again_adds_nothing(
    client, app, monkeypatch, capsys, database_url
):
    found = client.get(f"/fhir/PlanDefinition?url={PLAN_DEFINITION_URL}").json()
    versions = sorted(e["resource"]["version"] for e in found["entry"])
    assert versions == ["1.0.0", "1.1.0"]
    assert load_definitions(app.state.store, shipped_definitions()) == []
    monkeypatch.setenv("CAREPLAN_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        assert cli(["load-protocol"]) == 0
        assert "0 definitions added" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
    codes = client.get("/fhir/CodeSystem?url=" + b.CAREPLAN_CS).json()
    concepts = {c["code"] for e in codes["entry"] for c in e["resource"]["concept"]}
    assert {"R9b", "R12", "W5"} <= concepts


def test_apply_without_a_version_offers_the_newest_and_plans_keep_their_version(client):
    eligible_patient(client, day(0))
    eligible_patient(client)
    applied = client.get(
        f"/fhir/PlanDefinition/$apply?url={PLAN_DEFINITION_URL}&subject=Patient/{b.PATIENT_ID}"
    ).json()
    assert applied["instantiatesCanonical"] == [f"{PLAN_DEFINITION_URL}|1.1.0"]
    pinned = client.get(
        f"/fhir/PlanDefinition/$apply?url={PLAN_DEFINITION_URL}|1.0.0&subject=Patient/p1"
    ).json()
    assert pinned["instantiatesCanonical"] == [f"{PLAN_DEFINITION_URL}|1.0.0"]
    # C1's case: the 1.0.0 plan keeps deciding as 1.0.0, the 1.1.0 plan as 1.1.0
    old_plan, new_plan = enrol(client), _enrol_newest(client)
    old = submit(client, old_plan, [2, 4, 2, 4, 6], day(1)).json()
    new = submit(client, new_plan, [2, 4, 2, 4, 6], day(1, 10)).json()
    assert (decision_codes(old)[0], _module(old)) == ("continue", f"{PLAN_DEFINITION_URL}|1.0.0")
    assert decision_codes(new)[:2] == ["hold-back", "R4"]
    assert _module(new) == f"{PLAN_DEFINITION_URL}|1.1.0"


def test_C5_a_session_on_a_stopped_plan_is_stored_and_linked_to_the_open_review(client):
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = _enrol_newest(client)
    stop = submit(client, plan_id, TOLERATED, day(1), location_end="buttock-thigh").json()
    assert decision_codes(stop)[:2] == ["stop-and-refer", "R2"]
    review = created(stop, "ServiceRequest")[0]
    later = submit(client, plan_id, TOLERATED, day(2))
    assert later.status_code == 200, later.text
    answer = later.json()
    assert decision_codes(answer) == ["stop-and-refer", "R12"]
    kinds = [p["resource"]["resourceType"] for p in answer["parameter"] if p["name"] == "created"]
    assert kinds == ["Provenance"]  # no new review request, Task or patient message
    panel = client.get(
        f"/fhir/Observation?identifier={b.SESSION_IDENTIFIER_SYSTEM}|s-"
        f"{day(2).strftime('%Y%m%dT%H%M')}&based-on=CarePlan/{plan_id}"
    ).json()["entry"][0]["resource"]
    linked = client.get(f"/fhir/ServiceRequest/{review['id']}").json()
    assert {"reference": f"Observation/{panel['id']}"} in linked["supportingInfo"]
    assert linked["meta"]["versionId"] == "2"


def test_C5_a_1_0_0_plan_still_refuses_sessions_once_stopped(client):
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    submit(client, plan_id, TOLERATED, day(1), location_end="buttock-thigh")
    assert submit(client, plan_id, TOLERATED, day(2)).status_code == 422


def test_C8_a_session_before_the_patient_is_eligible(client):
    not_eligible = [
        b.episode_phase(day(0), "recovering"),
        b.red_flag_screen(day(0)),
        *b.pain_days(day(1), [3] * 14),
    ]
    patient_with_state(client, not_eligible)
    plan_id = _enrol_newest(client)
    flexion = client.get(f"/fhir/CarePlan/{plan_id}").json()["activity"][0]["detail"]
    assert flexion["status"] == "not-started"
    answer = submit(client, plan_id, TOLERATED, day(1, 18))
    assert answer.status_code == 200, answer.text
    assert decision_codes(answer.json()) == ["not-yet-eligible", "R7"]
    assert created(answer.json(), "ServiceRequest")
    message = created(answer.json(), "CommunicationRequest")[0]["payload"][0]["contentString"]
    assert message.endswith("consult a doctor or a physiotherapist.")


def test_replay_a_1_0_0_history_under_1_0_0_and_under_1_1_0(client, app):
    """Reproducibility: under 1.0.0 nothing changes; under 1.1.0 exactly the sessions the
    changes touch: R9b named (C6), the third session in a row without the Cobra reviewed (C7),
    [2,4,2,4,6] held back (C1)."""
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    history = [
        (TOLERATED, day(1), {}),
        ([3, 3, 3, 3, 3], day(2), {"location_start": "one-side", "location_end": "one-side"}),
        (TOLERATED, day(3), {"extension_followed": False}),
        (TOLERATED, day(4), {"extension_followed": False}),
        (TOLERATED, day(5), {"extension_followed": False}),
        ([2, 4, 2, 4, 6], day(6), {}),
    ]
    for reps, end, kwargs in history:
        assert submit(client, plan_id, reps, end, **kwargs).status_code == 200
    same = replay(app.state.store, plan_id, "1.0.0")
    assert [r.replayed for r in same] == [r.stored for r in same]
    assert not any(r.changed for r in same)
    newer = replay(app.state.store, plan_id, "1.1.0")
    assert [r.changed for r in newer] == [False, True, False, False, True, True]
    assert newer[1].replayed.rules == ("R9b",) and newer[1].stored.rules == ()
    assert (newer[4].stored.review, newer[4].replayed.review) == (False, True)
    assert (newer[5].stored.code, newer[5].replayed.code) == ("continue", "hold-back")
    assert all(r.replayed.plan.endswith("|1.1.0") for r in newer)
    assert all(r.stored.plan.endswith("|1.0.0") for r in newer)
    assert client.get(PLAN).json()["version"] == "1.0.0"


def test_1_1_0_decisions_through_http_are_valid_r4(client):
    """R9b (C6), W1's review (C7), a hold and a retry after its window (W5, C9) on a 1.1.0
    plan: every answer passes the R4 validator, each patient message ends with the consult
    sentence."""
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = _enrol_newest(client)
    steps = [
        ([3, 3, 3, 3, 3], day(1), {"location_start": "one-side", "location_end": "one-side"}),
        (TOLERATED, day(2), {"extension_followed": False}),
        (TOLERATED, day(3), {"extension_followed": False}),
        (TOLERATED, day(4), {"extension_followed": False}),
        ([1, 2, 3, 4, 5], day(5), {}),
        (TOLERATED, day(20), {}),
    ]
    answers = []
    for reps, end, kwargs in steps:
        response = submit(client, plan_id, reps, end, **kwargs)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    codes = [decision_codes(a) for a in answers]
    assert codes[0][:2] == ["continue", "R9b"] and created(answers[0], "ServiceRequest")
    assert not created(answers[2], "ServiceRequest")
    assert "W1" in codes[3] and created(answers[3], "ServiceRequest")
    assert codes[4][:2] == ["hold-back", "R4"]
    assert codes[5][:3] == ["continue", "R9", "R11"] and "W5" in codes[5]
    for answer in answers:
        message = created(answer, "CommunicationRequest")[0]["payload"][0]["contentString"]
        assert message.endswith("consult a doctor or a physiotherapist.")
