"""$apply: a CarePlan for a patient whose activities reflect eligibility (R0, R1, R3, R7, R8).

Eligible (R8): status active, activities `scheduled`. Otherwise the CarePlan is a draft and the
activities are `not-started` with a statusReason naming the decision (data-required,
stop-and-refer, supervision-required, not-yet-eligible) and why. Activities are CarePlan
`detail`s (see activities.py for why not `reference`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from service.protocol import history as h
from service.protocol.activities import level_activities
from service.protocol.codes import SNOMED, SNOMED_LOW_BACK_PAIN
from service.protocol.decide import Decision, decide
from service.protocol.fhirdata import Json, has_code, is_void, ref_key
from service.protocol.inputs import PatientRecord
from service.protocol.outputs import resource_id
from service.protocol.parameters import read_params
from service.protocol.texts import DISCLAIMER


@dataclass(frozen=True)
class AppliedPlan:
    care_plan: Json
    decision: Decision


def _reason(decision: Decision) -> tuple[str, str]:
    code = decision.code
    if code == h.DATA_REQUIRED:
        wanted = ", ".join(str(r.get("id")) for r in decision.data_requirements)
        return code, f"More information is needed before a start: {wanted}."
    if code == h.STOP_AND_REFER:
        return code, "A red flag is positive: clinician review before any exercise."
    if code == h.SUPERVISION_REQUIRED:
        return code, "Acute phase: only under qualified supervision."
    if code == h.NOT_YET_ELIGIBLE:
        when = decision.recheck_date.isoformat() if decision.recheck_date else "later"
        return code, f"Neither start criterion holds yet; re-check on {when}."
    return code, code


def apply_plan(
    plan_definition: Json,
    activity_definitions: dict[str, Json],
    record: PatientRecord,
    at: datetime,
) -> AppliedPlan:
    """The CarePlan $apply returns (not stored) and the Decision behind it."""
    params = read_params(plan_definition)
    decision = decide(plan_definition, replace(record, care_plan=None), None, at)
    first = params.levels[0]
    eligible = decision.code == h.START
    activities = level_activities(
        first,
        "scheduled" if eligible else "not-started",
        activity_definitions,
        None if eligible else _reason(decision),
    )
    patient_id = str(record.patient.get("id") or "unknown")
    care_plan: Json = {
        "resourceType": "CarePlan",
        "id": resource_id(f"Patient/{patient_id}", decision.session_key, "care-plan"),
        "instantiatesCanonical": [params.plan_canonical],
        "status": "active" if eligible else "draft",
        "intent": "plan",
        "title": plan_definition.get("title") or "Flexion in Lying",
        "description": f"{plan_definition.get('description') or 'Flexion in Lying'} {DISCLAIMER}",
        "subject": {"reference": record.patient_ref},
        "period": {"start": decision.clock.date().isoformat()},
        "created": decision.clock.isoformat().replace("+00:00", "Z"),
        "activity": activities,
    }
    addresses = [
        {"reference": ref}
        for c in record.conditions
        if not is_void(c)
        and has_code(c.get("code"), SNOMED, SNOMED_LOW_BACK_PAIN)
        and (ref := ref_key(c))
    ]
    if addresses:
        care_plan["addresses"] = addresses
    return AppliedPlan(care_plan, decision)
