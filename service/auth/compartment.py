"""The FHIR R4 Patient compartment for the resource types this service stores.

Source: CompartmentDefinition/patient, version 4.0.1, and the expressions of the search
parameters it names, as shipped in the npm package hl7.fhir.r4.examples@4.0.1
(CompartmentDefinition-patient.json, SearchParameter-*.json); the package hl7.fhir.r4.core is
not published on the npm registry. Each element path below is the expression of the parameter
named beside it; ``.where(resolve() is Patient)`` becomes "the reference points at a Patient".

In R4, GuidanceResponse, Task and Subscription list no parameters: they belong to no patient's
compartment. This service adds GuidanceResponse.subject and Task.for (``SERVICE_ADDITIONS``) so
that a patient-context token sees the decisions and retry windows about its patient;
Subscription stays outside (it names no patient).
"""

import re
from collections.abc import Iterator, Mapping
from typing import Any

# type -> (search parameter, element path) pairs, from the R4 CompartmentDefinition.
R4_PATIENT_COMPARTMENT: Mapping[str, tuple[tuple[str, str], ...]] = {
    "AuditEvent": (("patient", "agent.who"), ("patient", "entity.what")),
    "CarePlan": (("patient", "subject"), ("performer", "activity.detail.performer")),
    "CommunicationRequest": (
        ("subject", "subject"),
        ("sender", "sender"),
        ("recipient", "recipient"),
        ("requester", "requester"),
    ),
    "Condition": (("patient", "subject"), ("asserter", "asserter")),
    "DetectedIssue": (("patient", "patient"),),
    "Observation": (("subject", "subject"), ("performer", "performer")),
    "Patient": (("link", "link.other"),),
    "Procedure": (("patient", "subject"), ("performer", "performer.actor")),
    "Provenance": (("patient", "target"),),
    "QuestionnaireResponse": (("subject", "subject"), ("author", "author")),
    "ServiceRequest": (("subject", "subject"), ("performer", "performer")),
}

# Types R4 leaves out of every patient's compartment but which, here, are about one patient.
SERVICE_ADDITIONS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "GuidanceResponse": (("patient", "subject"),),
    "Task": (("patient", "for"),),
}

PATIENT_COMPARTMENT: Mapping[str, tuple[tuple[str, str], ...]] = {
    **R4_PATIENT_COMPARTMENT,
    **SERVICE_ADDITIONS,
}

_ID = r"[A-Za-z0-9\-.]{1,64}"
# Relative (Patient/x) or absolute (http(s)://.../Patient/x), optionally version-specific.
_PATIENT_REFERENCE = re.compile(rf"(?:https?://\S+/)?Patient/({_ID})(?:/_history/{_ID})?")


def compartment_params(resource_type: str) -> tuple[str, ...]:
    """The search parameters that tie ``resource_type`` to a patient (empty: never in one)."""
    return tuple(dict.fromkeys(param for param, _ in PATIENT_COMPARTMENT.get(resource_type, ())))


def patient_id_of(reference: str) -> str | None:
    """The Patient id a reference string points at, or None (other types, ``#contained``,
    ``urn:uuid:`` placeholders)."""
    match = _PATIENT_REFERENCE.fullmatch(reference)
    return match[1] if match else None


def patients_of(resource: Mapping[str, Any]) -> set[str]:
    """The ids of the patients in whose compartment the resource is."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return set()
    patients: set[str] = set()
    if resource_type == "Patient" and isinstance(resource.get("id"), str):
        patients.add(resource["id"])
    for _, path in PATIENT_COMPARTMENT.get(resource_type, ()):
        for reference in _references_at(resource, path.split(".")):
            patient = patient_id_of(reference)
            if patient is not None:
                patients.add(patient)
    return patients


# Whose record a resource is: the first link of its type above (subject, patient, for, target).
# The others (performer, author, asserter, sender, recipient, ...) say who took part.
_RECORD_OF: Mapping[str, str] = {
    resource_type: links[0][1]
    for resource_type, links in PATIENT_COMPARTMENT.items()
    if resource_type not in ("Patient", "AuditEvent")
}


def owners_of(resource: Mapping[str, Any]) -> set[str]:
    """The patients whose record the resource is: a Patient itself, else the one its
    subject (patient, for, target) names. A patient-context write must be about its patient
    alone: naming the patient as a performer does not make another patient's record its own."""
    resource_type = resource.get("resourceType")
    if resource_type == "Patient":
        return {resource["id"]} if isinstance(resource.get("id"), str) else set()
    path = _RECORD_OF.get(resource_type) if isinstance(resource_type, str) else None
    if path is None:
        return set()
    found = (patient_id_of(r) for r in _references_at(resource, path.split(".")))
    return {patient for patient in found if patient is not None}


def in_compartment(resource: Mapping[str, Any], patient_id: str) -> bool:
    """Whether the resource is in the compartment of Patient ``patient_id``."""
    return patient_id in patients_of(resource)


def _references_at(value: Any, steps: list[str]) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from _references_at(item, steps)
        return
    if not isinstance(value, Mapping):
        return
    if not steps:
        reference = value.get("reference")
        if isinstance(reference, str):
            yield reference
        return
    yield from _references_at(value.get(steps[0]), steps[1:])
