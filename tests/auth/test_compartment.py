"""Patient compartment membership, one test per stored type (R4 CompartmentDefinition/patient,
plus the service's GuidanceResponse and Task additions)."""

import pytest

from service.auth.compartment import (
    PATIENT_COMPARTMENT,
    R4_PATIENT_COMPARTMENT,
    compartment_params,
    in_compartment,
    patient_id_of,
    patients_of,
)

P = {"reference": "Patient/p1"}
OTHER = {"reference": "Patient/p2"}
PRACTITIONER = {"reference": "Practitioner/dr"}

STORED_TYPES = [
    "Patient",
    "CarePlan",
    "ServiceRequest",
    "Observation",
    "Condition",
    "Procedure",
    "GuidanceResponse",
    "Task",
    "DetectedIssue",
    "CommunicationRequest",
    "Provenance",
    "QuestionnaireResponse",
    "AuditEvent",
    "Subscription",
]


@pytest.mark.parametrize(
    ("resource", "patients"),
    [
        ({"resourceType": "Patient", "id": "p1"}, {"p1"}),
        (
            {"resourceType": "Patient", "id": "p1", "link": [{"other": OTHER, "type": "seealso"}]},
            {"p1", "p2"},
        ),
        ({"resourceType": "CarePlan", "subject": P}, {"p1"}),
        (
            {
                "resourceType": "CarePlan",
                "subject": P,
                "activity": [{"detail": {"performer": [OTHER]}}],
            },
            {"p1", "p2"},
        ),
        ({"resourceType": "ServiceRequest", "subject": P, "performer": [PRACTITIONER]}, {"p1"}),
        (
            {
                "resourceType": "ServiceRequest",
                "subject": {"reference": "Group/g"},
                "performer": [OTHER],
            },
            {"p2"},
        ),
        ({"resourceType": "Observation", "subject": P, "performer": [OTHER]}, {"p1", "p2"}),
        ({"resourceType": "Condition", "subject": P, "asserter": PRACTITIONER}, {"p1"}),
        ({"resourceType": "Condition", "subject": P, "asserter": OTHER}, {"p1", "p2"}),
        (
            {"resourceType": "Procedure", "subject": P, "performer": [{"actor": OTHER}]},
            {"p1", "p2"},
        ),
        ({"resourceType": "GuidanceResponse", "subject": P}, {"p1"}),
        ({"resourceType": "Task", "for": P, "owner": OTHER}, {"p1"}),
        ({"resourceType": "DetectedIssue", "patient": P}, {"p1"}),
        (
            {
                "resourceType": "CommunicationRequest",
                "subject": P,
                "recipient": [OTHER],
                "sender": PRACTITIONER,
            },
            {"p1", "p2"},
        ),
        ({"resourceType": "CommunicationRequest", "requester": P}, {"p1"}),
        (
            {"resourceType": "Provenance", "target": [{"reference": "CarePlan/c1"}, P]},
            {"p1"},
        ),
        ({"resourceType": "QuestionnaireResponse", "subject": P, "author": OTHER}, {"p1", "p2"}),
        (
            {
                "resourceType": "AuditEvent",
                "agent": [{"who": PRACTITIONER}],
                "entity": [{"what": P}],
            },
            {"p1"},
        ),
        ({"resourceType": "AuditEvent", "agent": [{"who": P}], "entity": []}, {"p1"}),
        ({"resourceType": "Subscription", "criteria": "Observation?patient=Patient/p1"}, set()),
    ],
    ids=lambda value: value.get("resourceType", "") if isinstance(value, dict) else "",
)
def test_patients_of_each_stored_type(resource: dict[str, object], patients: set[str]) -> None:
    assert patients_of(resource) == patients


def test_every_stored_type_has_a_rule_or_is_deliberately_outside() -> None:
    outside = {t for t in STORED_TYPES if t not in PATIENT_COMPARTMENT}
    assert outside == {"Subscription"}


def test_r4_table_leaves_guidance_response_and_task_out() -> None:
    # They are this service's additions, not R4's: kept apart so nobody cites them as R4.
    assert "GuidanceResponse" not in R4_PATIENT_COMPARTMENT
    assert "Task" not in R4_PATIENT_COMPARTMENT


def test_another_patients_observation_is_not_in_the_compartment() -> None:
    observation = {"resourceType": "Observation", "subject": OTHER}
    assert not in_compartment(observation, "p1")
    assert in_compartment(observation, "p2")


def test_practitioner_subject_puts_nothing_in_a_compartment() -> None:
    assert patients_of({"resourceType": "Observation", "subject": PRACTITIONER}) == set()


def test_unknown_type_is_in_no_compartment() -> None:
    assert patients_of({"resourceType": "Basic", "subject": P}) == set()
    assert patients_of({"subject": P}) == set()


@pytest.mark.parametrize(
    ("reference", "patient"),
    [
        ("Patient/p1", "p1"),
        ("Patient/p1/_history/3", "p1"),
        ("https://ehr.example/fhir/Patient/p1", "p1"),
        ("http://localhost:8000/fhir/Patient/p1/_history/2", "p1"),
        ("Practitioner/p1", None),
        ("#p1", None),
        ("urn:uuid:5a0b6f2e-7f4b-4d9e-b5f3-0e6b1e2b7c55", None),
        ("Foo/Patient/p1", None),
        ("Patient/", None),
    ],
)
def test_reference_forms(reference: str, patient: str | None) -> None:
    assert patient_id_of(reference) == patient


def test_compartment_params_name_the_r4_search_parameters() -> None:
    assert compartment_params("Observation") == ("subject", "performer")
    assert compartment_params("CarePlan") == ("patient", "performer")
    assert compartment_params("AuditEvent") == ("patient",)
    assert compartment_params("Subscription") == ()
