"""Patients with plans in every decision state, through this service's own FHIR API."""

from datetime import datetime, timedelta
from typing import Any

from tests.api.cds.helpers import Json, eligible, known_patient, now
from tests.api.scenario import enrol, part
from tests.protocol import builders as b

WEARING_OFF = [3, 2, 1, 1, 0]
RISING = [2, 3, 4, 5, 6]


def session(
    client: Any,
    care_plan_id: str,
    patient_id: str,
    reps: list[int | None],
    end: datetime,
    sid: str,
    **kw: Any,
) -> Json:
    """Submit a session for ``patient_id``'s plan; the decision answer."""
    bundle = b.session_bundle(reps, end, care_plan_id=care_plan_id, sid=sid, **kw)
    for entry in bundle["entry"]:
        entry["resource"]["subject"] = {"reference": f"Patient/{patient_id}"}
    answer = client.post(f"/fhir/CarePlan/{care_plan_id}/$submit-session", json=bundle)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def enrolled(client: Any, patient_id: str, mrn: str) -> str:
    """An eligible patient stored here, enrolled: the CarePlan id."""
    known_patient(client, patient_id, mrn, eligible())
    return enrol(client, patient_id)


def on_hold(client: Any, patient_id: str, mrn: str) -> tuple[str, Json]:
    """Enrolled, then a session whose pain rises with each repetition (R4) yesterday: the plan
    is held back with a retry window opening in six days. (CarePlan id, the decision.)"""
    care_plan = enrolled(client, patient_id, mrn)
    answer = session(
        client, care_plan, patient_id, RISING, now() - timedelta(days=1), f"{patient_id}-s1"
    )
    return care_plan, part(answer, "decision")


def stopped(client: Any, patient_id: str, mrn: str) -> str:
    """Enrolled, then a session that peripheralized (R2): stop and refer, review requested."""
    care_plan = enrolled(client, patient_id, mrn)
    session(
        client,
        care_plan,
        patient_id,
        WEARING_OFF,
        now() - timedelta(hours=2),
        f"{patient_id}-s1",
        location_start="central",
        location_end="buttock-thigh",
    )
    return care_plan


def continuing(client: Any, patient_id: str, mrn: str) -> str:
    """Enrolled, then a tolerated session: continue at level 1."""
    care_plan = enrolled(client, patient_id, mrn)
    session(
        client, care_plan, patient_id, WEARING_OFF, now() - timedelta(hours=2), f"{patient_id}-s1"
    )
    return care_plan
