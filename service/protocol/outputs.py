"""FHIR R4 resources for a decision: GuidanceResponse, CarePlan, Task, ServiceRequest,
DetectedIssue, CommunicationRequest and Provenance.

Ids are uuid5 of a fixed namespace and (care plan id, session identifier or evaluation clock,
kind), and every list is built in a fixed order, so the same input gives byte-identical output.
Features that are None (not reported / not applicable) are left out of outputParameters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from service.protocol import history as h
from service.protocol.codes import CANONICAL_BASE, CAREPLAN_CS, SNOMED, SNOMED_EVALUATION_PROCEDURE
from service.protocol.decide import Decision, FiredRule
from service.protocol.fhirdata import Json
from service.protocol.parameters import Params
from service.protocol.plan_update import updated_care_plan
from service.protocol.texts import explanation, patient_text

# Fixed forever: changing it changes every output id.
ID_NAMESPACE = uuid.UUID("6f1c2a52-3b8e-5d4a-9c1e-0f7a6b3d2e10")
SERVICE_DISPLAY = "flexion-careplan decision service"
DECISION_IDENTIFIER_SYSTEM = f"{CANONICAL_BASE}/sid/decision"
FEATURES_ID = "features"
_SEVERITY = {
    "R1": "high",
    "R2": "high",
    "R3": "moderate",
    "R4": "moderate",
    "R5": "moderate",
    "R6": "moderate",
}
_REVIEWABLE = ("Observation/", "Condition/")


@dataclass(frozen=True)
class DecisionOutputs:
    guidance_response: Json
    care_plan: Json
    task: Json | None
    service_request: Json | None
    detected_issues: tuple[Json, ...]
    communication_request: Json | None
    provenance: Json
    care_plan_changed: bool = True  # False: the decision leaves the plan as it was

    @property
    def created(self) -> list[Json]:
        """Every resource besides the GuidanceResponse and the CarePlan, in a fixed order."""
        extra = [self.task, self.service_request, *self.detected_issues, self.communication_request]
        return [r for r in extra if r is not None] + [self.provenance]


def resource_id(care_plan_id: str, session_key: str, kind: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{care_plan_id}|{session_key}|{kind}"))


def _ref(resource: Json) -> Json:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def _concept(code: str, display: str | None = None) -> Json:
    coding: Json = {"system": CAREPLAN_CS, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _instant(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _parameter(name: str, value: Any) -> Json:
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, int):
        return {"name": name, "valueInteger": value}
    if isinstance(value, datetime):
        return {"name": name, "valueDateTime": _instant(value)}
    if isinstance(value, date):
        return {"name": name, "valueDate": value.isoformat()}
    if name == h.P_DECISION:
        return {"name": name, "valueCode": str(value)}
    return {"name": name, "valueString": str(value)}


def _reason_codes(decision: Decision) -> list[Json]:
    rules = [_concept(f.id) for f in (*decision.fired, *decision.warnings)]
    return [_concept(decision.code), *rules]


def _guidance_response(d: Decision, gid: str, plan_ref: Json, inputs: list[Json]) -> Json:
    features = [_parameter(k, v) for k, v in d.features.items() if v is not None]
    response: Json = {
        "resourceType": "GuidanceResponse",
        "id": gid,
        "contained": [{"resourceType": "Parameters", "id": FEATURES_ID, "parameter": features}],
        "identifier": [{"system": DECISION_IDENTIFIER_SYSTEM, "value": gid}],
        "moduleCanonical": d.plan_canonical,
        "status": "data-required" if d.code == h.DATA_REQUIRED else "success",
        "subject": {"reference": d.patient_ref},
        "occurrenceDateTime": _instant(d.clock),
        "performer": {"display": SERVICE_DISPLAY},
        "reasonCode": _reason_codes(d),
        "note": [{"text": explanation(d)}],
        "outputParameters": {"reference": f"#{FEATURES_ID}"},
        "result": plan_ref,
    }
    reviewable = [i for i in inputs if i["reference"].startswith(_REVIEWABLE)]
    if reviewable:
        response["reasonReference"] = reviewable
    if d.data_requirements:
        response["dataRequirement"] = list(d.data_requirements)
    return response


def _task(d: Decision, tid: str, plan_ref: Json) -> Json | None:
    if not (d.hold_is_new and d.retry_start and d.retry_end):
        return None
    return {
        "resourceType": "Task",
        "id": tid,
        "basedOn": [plan_ref],
        "status": "requested",
        "intent": "plan",
        "code": {**_concept("retry-flexion"), "text": "Retry Flexion in Lying"},
        "description": (
            "Try Flexion in Lying again inside this window (try it in another week or two)."
        ),
        "focus": plan_ref,
        "for": {"reference": d.patient_ref},
        "authoredOn": _instant(d.clock),
        "reasonCode": _concept(d.code),
        "restriction": {
            "period": {"start": d.retry_start.isoformat(), "end": d.retry_end.isoformat()}
        },
    }


def _service_request(
    d: Decision, sid: str, plan_ref: Json, session_refs: list[Json]
) -> Json | None:
    if not d.review_requested:
        return None
    request: Json = {
        "resourceType": "ServiceRequest",
        "id": sid,
        "basedOn": [plan_ref],
        "status": "active",
        "intent": "proposal",
        "priority": "urgent" if d.urgent else "routine",
        "code": {
            "coding": [
                {
                    "system": SNOMED,
                    "code": SNOMED_EVALUATION_PROCEDURE,
                    "display": "Evaluation procedure",
                }
            ],
            "text": "Clinician review of the Flexion in Lying plan",
        },
        "subject": {"reference": d.patient_ref},
        "authoredOn": _instant(d.clock),
        "reasonCode": _reason_codes(d),
        "note": [{"text": explanation(d)}],
    }
    if session_refs:
        request["supportingInfo"] = session_refs
    return request


def _issue(
    d: Decision, iid: str, finding: FiredRule, severity: str, session_refs: list[Json]
) -> Json:
    issue: Json = {
        "resourceType": "DetectedIssue",
        "id": iid,
        "status": "final",
        "code": {**_concept(finding.id), "text": finding.source},
        "severity": severity,
        "patient": {"reference": d.patient_ref},
        "identifiedDateTime": _instant(d.clock),
        "author": {"display": SERVICE_DISPLAY},
        "detail": f"{finding.id} ({finding.tag}): {finding.source}",
    }
    if session_refs:
        issue["implicated"] = session_refs
    return issue


def _issues(d: Decision, cp_id: str, session_refs: list[Json]) -> tuple[Json, ...]:
    findings = [(f, _SEVERITY[f.id]) for f in d.fired if f.id in _SEVERITY]
    findings += [(w, "low") for w in d.warnings]
    return tuple(
        _issue(d, resource_id(cp_id, d.session_key, f"issue-{f.id}"), f, sev, session_refs)
        for f, sev in findings
    )


def _communication(d: Decision, cid: str, plan_ref: Json, gr: Json, params: Params) -> Json:
    return {
        "resourceType": "CommunicationRequest",
        "id": cid,
        "basedOn": [plan_ref],
        "status": "active",
        "priority": "urgent" if d.urgent else "routine",
        "subject": {"reference": d.patient_ref},
        "about": [_ref(gr)],
        "recipient": [{"reference": d.patient_ref}],
        "payload": [{"contentString": patient_text(d, params)}],
        "authoredOn": _instant(d.clock),
        "reasonCode": [_concept(d.code)],
    }


def _provenance(d: Decision, pid: str, targets: list[Json], inputs: list[Json]) -> Json:
    plan_entity: Json = {"display": d.plan_canonical}
    if d.plan_id:
        plan_entity["reference"] = f"PlanDefinition/{d.plan_id}"
    return {
        "resourceType": "Provenance",
        "id": pid,
        "target": targets,
        "recorded": _instant(d.clock),
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                        }
                    ]
                },
                "who": {"display": SERVICE_DISPLAY},
            }
        ],
        "entity": [
            *({"role": "source", "what": ref} for ref in inputs),
            {"role": "source", "what": plan_entity},
        ],
    }


def late_note(newer: datetime) -> str:
    """Why a decision older than the plan's newest one changed nothing the patient sees."""
    return (
        f"Decided after a later decision of this plan (at {_instant(newer)}), at this session's "
        "own time. Recorded for audit and clinician review; the CarePlan follows its newest "
        "decision, so it was not changed and the patient gets no new instruction."
    )


def build_outputs(
    decision: Decision,
    params: Params,
    care_plan: Json,
    session_refs: list[str] | None = None,
    newer: datetime | None = None,
    care_plan_version: int | None = None,
) -> DecisionOutputs:
    """All resources of a decision. `session_refs` defaults to the decision's session inputs.

    `newer`: the clock of a later decision this plan already has (a session that arrived late,
    an evaluation at a past clock). The plan state is folded from the decisions in time order
    (history.py), so the CarePlan and what the patient was told stay with the newest decision:
    no CarePlan change, no retry Task, no patient message. The GuidanceResponse, the clinician
    review request and the detected issues are still recorded, so nothing clinical is missed.

    `care_plan_version`: the stored version of `care_plan`. The Provenance then names the
    version the decision read (entity) and the one it writes (target), so the decision's
    answer can be given again exactly as it was.
    """
    d = decision
    cp_id = str(care_plan.get("id") or "no-care-plan")

    def rid(kind: str) -> str:
        return resource_id(cp_id, d.session_key, kind)

    plan = updated_care_plan(care_plan, d, params) if newer is None else care_plan
    plan_ref = {"reference": f"CarePlan/{cp_id}"}
    inputs = [{"reference": ref} for ref in d.input_refs]
    sessions = (
        [{"reference": ref} for ref in (session_refs or [])]
        or [i for i in inputs if i["reference"].startswith("Observation/")]
        if d.features.get("reps") is not None
        else []
    )
    gr = _guidance_response(d, rid("guidance-response"), plan_ref, inputs)
    request = _service_request(d, rid("service-request"), plan_ref, sessions)
    issues = _issues(d, cp_id, sessions)
    task = communication = None
    stop_stands = h.STOP_STANDS in d.rule_ids
    if stop_stands:  # the standing stop (C5) sends no new message; the answer says it
        gr["note"].append({"text": f"Patient: {patient_text(d, params)}"})
    if newer is None:
        task = _task(d, rid("task"), plan_ref)
        if not stop_stands:
            communication = _communication(d, rid("communication-request"), plan_ref, gr, params)
    else:
        gr["note"].append({"text": late_note(newer)})
    read, written = plan_ref, plan_ref
    if care_plan_version is not None:
        read = {"reference": f"CarePlan/{cp_id}/_history/{care_plan_version}"}
        written = {"reference": f"CarePlan/{cp_id}/_history/{care_plan_version + 1}"}
    plan_changed = plan != care_plan
    changed = [written] if plan_changed else []
    targets = [_ref(gr), *changed] + [
        _ref(x) for x in (task, request, *issues, communication) if x is not None
    ]
    sources = [*inputs, read] if care_plan_version is not None else inputs
    provenance = _provenance(d, rid("provenance"), targets, sources)
    return DecisionOutputs(gr, plan, task, request, issues, communication, provenance, plan_changed)
