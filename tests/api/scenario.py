"""Drive the protocol through HTTP: a patient, their state, enrolment and sessions.

Clocks are relative to today, since the service refuses sessions in the future and $apply
decides as of now.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.protocol import builders as b

FHIR = {"content-type": "application/fhir+json"}
PLAN = "/fhir/PlanDefinition/flexion-in-lying-protocol"


def day(n: int, hour: int = 9) -> datetime:
    """Day n of a scenario that started 40 days ago (day 40 = today)."""
    start = date.today() - timedelta(days=40)
    return b.at(n, hour, start=start)


def put(client: Any, resource: dict[str, Any]) -> dict[str, Any]:
    response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in (200, 201), response.text
    return response.json()


def patient_with_state(client: Any, state: list[dict[str, Any]]) -> str:
    put(client, b.patient())
    for resource in state:
        put(client, resource)
    return b.PATIENT_ID


def eligible_patient(client: Any, clock: datetime | None = None) -> str:
    return patient_with_state(client, b.eligible_state(clock or datetime.now(UTC)))


def enrol(client: Any, patient_id: str = b.PATIENT_ID, start: date | None = None) -> str:
    """Enrol now, the plan starting on `start` (default: the scenario's day 0), since a
    session before the plan's start is refused and the scenarios' sessions lie in the past."""
    applied = client.get(f"{PLAN}/$apply?subject=Patient/{patient_id}")
    assert applied.status_code == 200, applied.text
    care_plan = {k: v for k, v in applied.json().items() if k != "id"}
    care_plan["period"] = {"start": (start or day(0).date()).isoformat()}
    enrolled = client.post("/fhir/CarePlan", json=care_plan)
    assert enrolled.status_code == 201, enrolled.text
    return enrolled.json()["id"]


def submit(client: Any, care_plan_id: str, reps: list[int | None], end: datetime, **kw: Any):
    bundle = b.session_bundle(reps, end, care_plan_id=care_plan_id, **kw)
    return client.post(f"/fhir/CarePlan/{care_plan_id}/$submit-session", json=bundle)


def decision_codes(answer: dict[str, Any]) -> list[str]:
    guidance = part(answer, "decision")
    return [c["code"] for concept in guidance.get("reasonCode", []) for c in concept["coding"]]


def part(answer: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p["resource"] for p in answer["parameter"] if p["name"] == name)


def created(answer: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        p["resource"]
        for p in answer["parameter"]
        if p["name"] == "created" and p["resource"]["resourceType"] == resource_type
    ]
