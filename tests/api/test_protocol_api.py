"""Issue 3: the protocol as FHIR artifacts through the REST API, $apply and enrolment."""

from datetime import UTC, datetime, timedelta

import pytest

from service.protocol.codes import (
    CANONICAL_BASE,
    CAREPLAN_CS,
    EXT_DECISION_PARAMETER,
    EXT_REPETITIONS_PER_SESSION,
    SNOMED_EXERCISE_THERAPY,
)
from tests.api.helpers import store_snapshot
from tests.api.scenario import PLAN, eligible_patient, enrol, patient_with_state
from tests.protocol import builders as b

DISCLAIMER = "consult a doctor or a physiotherapist"


def _parameters(plan: dict) -> dict[str, int]:
    values = {}
    for ext in plan["extension"]:
        if ext["url"] == EXT_DECISION_PARAMETER:
            parts = {e["url"]: e for e in ext["extension"]}
            values[parts["name"]["valueCode"]] = parts["value"]["valueInteger"]
    return values


def test_plan_definition_carries_the_protocol(client):
    plan = client.get(PLAN).json()
    assert plan["type"]["coding"][0]["code"] == "clinical-protocol"
    level1 = next(a for a in plan["action"] if a["id"] == "level-1")
    repeat = level1["timingTiming"]["repeat"]
    assert (
        repeat["frequency"],
        repeat["frequencyMax"],
        repeat["period"],
        repeat["periodUnit"],
    ) == (3, 4, 1, "d")
    flexion, extension = level1["action"]
    reps = next(e for e in flexion["extension"] if e["url"] == EXT_REPETITIONS_PER_SESSION)
    assert (reps["valueRange"]["low"]["value"], reps["valueRange"]["high"]["value"]) == (5, 6)
    related = extension["relatedAction"][0]
    assert related["actionId"] == flexion["id"]
    assert related["relationship"] == "after-end"
    assert related["offsetDuration"]["value"] == 0
    params = _parameters(plan)
    assert params["retry-min-days"] == 7 and params["retry-max-days"] == 14
    assert params["rising-min-increase"] == 2 and params["severe-pain-threshold"] == 7
    assert DISCLAIMER in plan["text"]["div"]


def test_activity_definitions_carry_steps_cautions_and_codes(client):
    flexion = client.get("/fhir/ActivityDefinition/flexion-in-lying").json()
    text = (flexion["description"] + flexion["text"]["div"]).lower()
    for caution in ("raise your head", "straighten", "second or two", "closer"):
        assert caution in text, caution
    assert DISCLAIMER in text
    systems = {(c["system"], c["code"]) for c in flexion["code"]["coding"]}
    assert ("http://snomed.info/sct", SNOMED_EXERCISE_THERAPY) in systems
    assert any(s == CAREPLAN_CS for s, _ in systems)
    assert flexion["bodySite"][0]["coding"][0]["code"] == "37822005"
    cobra = client.get("/fhir/ActivityDefinition/extension-in-lying").json()
    assert DISCLAIMER in cobra["description"].lower() + cobra["text"]["div"].lower()


def test_plan_definition_summary_and_elements(client):
    elements = client.get(f"{PLAN}?_elements=url,version").json()
    assert set(elements) == {"resourceType", "id", "meta", "url", "version", "status"}
    summary = client.get(f"{PLAN}?_summary=true").json()
    assert "action" not in summary and summary["url"].endswith("flexion-in-lying-protocol")


def test_operations_are_declared_and_defined(client):
    statement = client.get("/fhir/metadata").json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    declared = {
        (t, op["name"]): op["definition"]
        for t, r in resources.items()
        for op in r.get("operation", [])
    }
    assert set(declared) == {
        ("PlanDefinition", "apply"),
        ("CarePlan", "submit-session"),
        ("CarePlan", "evaluate"),
        ("Subscription", "status"),
        ("Subscription", "events"),
    }
    for definition in declared.values():
        if definition.startswith(CANONICAL_BASE):  # this service's own: stored here
            found = client.get(f"/fhir/OperationDefinition?url={definition}").json()
            assert found["total"] == 1
        else:  # the Subscriptions Backport IG's
            assert definition.startswith(
                "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
            )


def _activity_statuses(care_plan: dict) -> list[str]:
    return [a["detail"]["status"] for a in care_plan["activity"]]


def test_apply_eligible_by_criterion_a(client):
    eligible_patient(client)
    care_plan = client.get(f"{PLAN}/$apply?subject=Patient/{b.PATIENT_ID}").json()
    assert care_plan["resourceType"] == "CarePlan"
    assert care_plan["instantiatesCanonical"][0].endswith("flexion-in-lying-protocol|1.0.0")
    assert _activity_statuses(care_plan) == ["scheduled", "scheduled"]
    assert care_plan["subject"]["reference"] == f"Patient/{b.PATIENT_ID}"
    # $apply does not store anything.
    assert client.get("/fhir/CarePlan?_summary=count").json()["total"] == 0


def test_apply_eligible_by_criterion_b(client):
    now = datetime.now(UTC)
    state = [
        b.episode_phase(now - timedelta(days=40), "persistent"),
        b.red_flag_screen(now - timedelta(days=1)),
        b.extension_program(now - timedelta(days=20), baseline=6, current=2, location="central"),
    ]
    patient_with_state(client, state)
    care_plan = client.get(f"{PLAN}/$apply?subject=Patient/{b.PATIENT_ID}").json()
    assert _activity_statuses(care_plan) == ["scheduled", "scheduled"]


def _not_started_reason(care_plan: dict) -> str:
    detail = care_plan["activity"][0]["detail"]
    assert detail["status"] == "not-started"
    return detail["statusReason"]["coding"][0]["code"]


def test_apply_not_eligible(client):
    now = datetime.now(UTC)
    state = [
        b.episode_phase(now - timedelta(days=20), "recovering"),
        b.red_flag_screen(now - timedelta(days=1)),
        *b.pain_days(now, [3] * 14),
    ]
    patient_with_state(client, state)
    care_plan = client.get(f"{PLAN}/$apply?subject=Patient/{b.PATIENT_ID}").json()
    assert _not_started_reason(care_plan) == "not-yet-eligible"


def test_apply_acute_needs_supervision(client):
    now = datetime.now(UTC)
    state = [b.episode_phase(now - timedelta(days=2), "acute"), b.red_flag_screen(now)]
    patient_with_state(client, state)
    care_plan = client.get(f"{PLAN}/$apply?subject=Patient/{b.PATIENT_ID}").json()
    assert _not_started_reason(care_plan) == "supervision-required"


def test_apply_red_flag_screen_missing(client):
    now = datetime.now(UTC)
    state = [b.episode_phase(now - timedelta(days=20), "recovering"), *b.pain_days(now, [0] * 14)]
    patient_with_state(client, state)
    care_plan = client.get(f"{PLAN}/$apply?subject=Patient/{b.PATIENT_ID}").json()
    assert _not_started_reason(care_plan) == "data-required"


def test_apply_post_parameters_and_type_level_url(client):
    eligible_patient(client)
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "subject", "valueString": f"Patient/{b.PATIENT_ID}"}],
    }
    posted = client.post(f"{PLAN}/$apply", json=body)
    assert posted.status_code == 200
    url = "https://fhir.flexion-careplan.org/PlanDefinition/flexion-in-lying-protocol|1.0.0"
    by_url = client.get(f"/fhir/PlanDefinition/$apply?url={url}&subject=Patient/{b.PATIENT_ID}")
    assert by_url.status_code == 200
    assert _activity_statuses(by_url.json()) == _activity_statuses(posted.json())


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"{PLAN}/$apply?subject=Patient/nobody", 404),
        ("/fhir/PlanDefinition/unknown/$apply?subject=Patient/p1", 404),
        (f"{PLAN}/$apply?subject=not-a-reference", 400),
        (f"{PLAN}/$apply", 400),
        ("/fhir/PlanDefinition/$apply?url=https://nowhere/x&subject=Patient/p1", 404),
    ],
)
def test_apply_errors(client, path, status):
    eligible_patient(client)
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


def test_apply_refuses_a_repeated_subject_or_url(client):
    """Two subjects (or canonicals) are ambiguous: taking one of them silently is a guess."""
    eligible_patient(client)
    other = {"resourceType": "Patient", "id": "other-patient", "name": [{"family": "Other"}]}
    assert client.put("/fhir/Patient/other-patient", json=other).status_code == 201
    two = f"subject=Patient/{b.PATIENT_ID}&subject=Patient/other-patient"
    url = "https://fhir.flexion-careplan.org/PlanDefinition/flexion-in-lying-protocol|1.0.0"
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": f"Patient/{b.PATIENT_ID}"},
            {"name": "subject", "valueString": "Patient/other-patient"},
        ],
    }
    twice_url = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": f"Patient/{b.PATIENT_ID}"},
            {"name": "url", "valueUri": url},
            {"name": "url", "valueUri": url},
        ],
    }
    for response, name in [
        (client.get(f"{PLAN}/$apply?{two}"), "subject"),
        (client.post(f"{PLAN}/$apply", json=parameters), "subject"),
        (
            client.get(
                f"/fhir/PlanDefinition/$apply?url={url}&url={url}&subject=Patient/{b.PATIENT_ID}"
            ),
            "url",
        ),
        (client.post("/fhir/PlanDefinition/$apply", json=twice_url), "url"),
    ]:
        assert response.status_code == 400, response.text
        issue = response.json()["issue"][0]
        assert issue["code"] == "invalid"
        assert issue["expression"] == [name]
        assert "more than once" in issue["diagnostics"]


def test_enrol_and_refuse_contradicting_plans(client, app):
    eligible_patient(client)
    care_plan_id = enrol(client)
    stored = client.get(f"/fhir/CarePlan/{care_plan_id}").json()
    assert stored["status"] == "active"

    applied = client.get(f"{PLAN}/$apply?subject=Patient/{b.PATIENT_ID}").json()
    applied.pop("id")
    before = store_snapshot(app)
    missing_cobra = {**applied, "activity": applied["activity"][:1]}
    refused = client.post("/fhir/CarePlan", json=missing_cobra)
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["code"] == "business-rule"
    wrong_dose = {**applied}
    wrong_dose["activity"] = [dict(a) for a in applied["activity"]]
    detail = dict(wrong_dose["activity"][0]["detail"])
    detail["scheduledTiming"] = {"repeat": {"frequency": 8, "period": 1, "periodUnit": "d"}}
    wrong_dose["activity"][0] = {"detail": detail}
    assert client.post("/fhir/CarePlan", json=wrong_dose).status_code == 422
    assert store_snapshot(app) == before
