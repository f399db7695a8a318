"""The CDS services this server offers, one per hook, and the discovery document.

Prefetch templates ask for the EHR's Patient (to match it with a Patient stored here) and,
optionally, its pain scores and the protocol's screening Observations, which decide whether
a patient this service does not know yet is eligible. Decisions about enrolled patients come
from this service's own records, so nothing else is asked for.
"""

from dataclasses import dataclass
from typing import Any

from service.protocol.codes import CAREPLAN_CS, LOINC, LOINC_PAIN_NRS

Json = dict[str, Any]

PATIENT_VIEW = "patient-view"
ORDER_SIGN = "order-sign"
APPOINTMENT_BOOK = "appointment-book"

PATIENT_KEY = "patient"
PAIN_KEY = "painScores"
SCREENING_KEY = "screening"
# The patient-state Observations the protocol reads (protocol/inputs.py), by their codes.
SCREENING_CODES = ("red-flag-screen", "episode-phase", "extension-program")

_PATIENT = "{{context.patientId}}"
PREFETCH_QUERIES: dict[str, str] = {
    PATIENT_KEY: f"Patient/{_PATIENT}",
    PAIN_KEY: (
        f"Observation?patient={_PATIENT}&code={LOINC}|{LOINC_PAIN_NRS}&_sort=-date&_count=100"
    ),
    SCREENING_KEY: (
        f"Observation?patient={_PATIENT}&code="
        + ",".join(f"{CAREPLAN_CS}|{code}" for code in SCREENING_CODES)
        + "&_sort=-date&_count=50"
    ),
}
_USAGE = (
    "Every call carries the EHR's signed JWT (a CDS client configured in CAREPLAN_CDS_CLIENTS). "
    "The EHR's Patient comes as prefetch `patient`, or is read from `fhirServer` with "
    "`fhirAuthorization` (read access to Patient and Observation; the server must be in "
    "CAREPLAN_CDS_FHIR_SERVERS); without either the answer is 412. A patient's plan is shown "
    "when `fhirServer` is this service or when the EHR's Patient shares an identifier, in a "
    "trusted system, with a Patient stored here."
)


@dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str
    prefetch: tuple[str, ...]

    def discovery_entry(self) -> Json:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": {key: PREFETCH_QUERIES[key] for key in self.prefetch},
            "usageRequirements": _USAGE,
        }


SERVICES: dict[str, CdsService] = {
    service.id: service
    for service in (
        CdsService(
            "flexion-patient-view",
            PATIENT_VIEW,
            "Flexion in Lying: the patient's plan",
            "The patient's Flexion in Lying plan as one card: the latest decision, its rules "
            "with their protocol sentences, the retry window and open review requests. For a "
            "patient without a plan who is eligible, a card suggesting enrolment.",
            (PATIENT_KEY, PAIN_KEY, SCREENING_KEY),
        ),
        CdsService(
            "flexion-order-sign",
            ORDER_SIGN,
            "Flexion in Lying: physiotherapy referral for low back pain",
            "On signing a draft ServiceRequest whose reasonCode is low back pain (SNOMED CT "
            "279039007, or chronic low back pain 278860009): a card suggesting enrolment on the "
            "Flexion in Lying protocol (the CarePlan to create), or saying why not yet (acute "
            "phase: supervised only; red flag: refer; missing data). A patient already enrolled "
            "gets the plan's card.",
            (PATIENT_KEY, PAIN_KEY, SCREENING_KEY),
        ),
        CdsService(
            "flexion-appointment-book",
            APPOINTMENT_BOOK,
            "Flexion in Lying: visit timing",
            "On booking a Flexion in Lying visit (an Appointment whose reason, service or type "
            "is low back pain or exercise therapy) before a hold-back's retry window opens, or "
            "while the plan is stopped for clinician review: a warning with the date the "
            "window opens (or the pending review) and a suggestion to move or cancel it. "
            "Nothing when the plan allows the visit.",
            (PATIENT_KEY,),
        ),
    )
}


def discovery() -> Json:
    return {"services": [service.discovery_entry() for service in SERVICES.values()]}
