"""Builders for CDS Hooks calls, patients here and in the test EHR, and the checks every
answer gets: the CDS Hooks shapes (tests/support/cds_shapes.py) and, for every FHIR resource a
suggestion carries, the independent R4 validator."""

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from service.protocol.codes import CAREPLAN_CS, LOINC_PAIN_NRS
from tests.protocol import builders as b
from tests.support.cds_shapes import check

Json = dict[str, Any]
MRN_SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"
EHR_TOKEN = "ehr-access-token-7f3a"
PATIENT_VIEW = "flexion-patient-view"
ORDER_SIGN = "flexion-order-sign"
APPOINTMENT_BOOK = "flexion-appointment-book"
HOOKS = {
    PATIENT_VIEW: "patient-view",
    ORDER_SIGN: "order-sign",
    APPOINTMENT_BOOK: "appointment-book",
}


def now() -> datetime:
    return datetime.now(UTC)


def patient(patient_id: str, mrn: str) -> Json:
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
        "name": [{"family": "Doe", "given": ["Ann"]}],
    }


def owned(resources: list[Json], patient_id: str) -> list[Json]:
    """Copies of builder resources for ``patient_id`` (ids prefixed, subject replaced)."""
    found = []
    for resource in resources:
        item = copy.deepcopy(resource)
        item["id"] = f"{patient_id}-{item['id']}"[:64]
        item["subject"] = {"reference": f"Patient/{patient_id}"}
        found.append(item)
    return found


def eligible(clock: datetime | None = None) -> list[Json]:
    return b.eligible_state(clock or now())


def acute(clock: datetime | None = None) -> list[Json]:
    clock = clock or now()
    return [
        b.episode_phase(clock - timedelta(days=3), "acute"),
        b.red_flag_screen(clock - timedelta(days=1)),
    ]


def red_flag(clock: datetime | None = None) -> list[Json]:
    clock = clock or now()
    return [
        b.episode_phase(clock - timedelta(days=20), "recovering"),
        b.red_flag_screen(clock - timedelta(days=1), ("fever",)),
        *b.pain_days(clock, [0] * 14),
    ]


def put_all(client: Any, resources: list[Json]) -> None:
    for resource in resources:
        answer = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        assert answer.status_code in (200, 201), answer.text


def known_patient(client: Any, patient_id: str, mrn: str, state: list[Json]) -> None:
    """A Patient stored in this service, with its state Observations."""
    put_all(client, [patient(patient_id, mrn), *owned(state, patient_id)])


def searchset(resources: list[Json]) -> Json:
    bundle: Json = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
    if resources:  # FHIR has no empty arrays
        bundle["entry"] = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    return bundle


def is_pain(resource: Json) -> bool:
    return any(c.get("code") == LOINC_PAIN_NRS for c in resource["code"]["coding"])


def full_prefetch(ehr_patient: Json, observations: list[Json]) -> Json:
    """What an EHR answers for every prefetch template."""
    screening = [
        o for o in observations if any(c.get("system") == CAREPLAN_CS for c in o["code"]["coding"])
    ]
    return {
        "patient": ehr_patient,
        "painScores": searchset([o for o in observations if is_pain(o)]),
        "screening": searchset(screening),
    }


def hook_body(
    service: str,
    patient_id: str,
    *,
    prefetch: Json | None = None,
    fhir_server: str | None = None,
    token: str | None = EHR_TOKEN,
    instance: str | None = None,
    **context: Any,
) -> Json:
    body: Json = {
        "hook": HOOKS[service],
        "hookInstance": instance or str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id, **context},
    }
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
        if token is not None:
            body["fhirAuthorization"] = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "user/Patient.read user/Observation.read",
                "subject": "flexion-careplan",
            }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def referral(reason: str = "279039007", status: str = "draft") -> Json:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "ServiceRequest",
                    "id": "referral-1",
                    "status": status,
                    "intent": "order",
                    "code": {"text": "Referral to physiotherapy"},
                    "subject": {"reference": "Patient/ehr-x"},
                    "reasonCode": [
                        {"coding": [{"system": "http://snomed.info/sct", "code": reason}]}
                    ],
                }
            }
        ],
    }


def appointment(
    patient_id: str, start: datetime, *, appointment_id: str = "apt-1", code: str = "279039007"
) -> Json:
    end = start + timedelta(minutes=30)
    return {
        "resourceType": "Appointment",
        "id": appointment_id,
        "status": "proposed",
        "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": code}]}],
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": end.isoformat().replace("+00:00", "Z"),
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "needs-action"},
            {"actor": {"reference": "Practitioner/physio-1"}, "status": "accepted"},
        ],
    }


def appointments(*visits: Json) -> Json:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": v} for v in visits],
    }


def cards_of(response: Any, validator: Any) -> list[Json]:
    """The cards of a 200 answer, checked against the CDS Hooks shapes; every FHIR resource in
    a suggestion passes the independent R4 validator (when Node is here; always in CI)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    problems = check("CDSHooksResponse", document)
    assert problems == [], problems
    for card in document["cards"]:
        for suggestion in card.get("suggestions", []):
            for action in suggestion.get("actions", []):
                if "resource" in action and validator is not None:
                    assert validator.validate(action["resource"]) == [], action["resource"]
    return list(document["cards"])


def outcome(response: Any, status: int) -> list[Json]:
    """The issues of an OperationOutcome error answer with ``status``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return list(body["issue"])
