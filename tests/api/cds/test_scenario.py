"""The CDS Hooks scenario, end to end, with the test EHR (a second instance of this service
on loopback) holding the EHR's patient:

a referral at order-sign (the enrolment suggestion) -> enrolment -> a rising session ->
patient-view shows the hold and its window -> appointment-book inside the hold warns ->
after the window opens, a tolerated retry -> patient-view shows continue.

Sessions cannot lie in the future, so the plan's days are past days (day 40 = today); the
service decides each hook from its records whatever day it is.
"""

from datetime import timedelta

from tests.api.cds.helpers import (
    APPOINTMENT_BOOK,
    EHR_TOKEN,
    ORDER_SIGN,
    PATIENT_VIEW,
    appointment,
    appointments,
    cards_of,
    eligible,
    full_prefetch,
    hook_body,
    known_patient,
    patient,
    referral,
)
from tests.api.cds.plans import RISING, WEARING_OFF, session
from tests.api.scenario import day, decision_codes

EHR_ID, HERE_ID, MRN = "ehr-scenario", "here-scenario", "mrn-scenario"


def test_referral_enrolment_hold_booking_retry_continue(client, r4_validator, ehr) -> None:
    ehr_patient = ehr.put(patient(EHR_ID, MRN))
    known_patient(client, HERE_ID, MRN, eligible())

    # order-sign, nothing prefetched: the service reads the Patient from the EHR with the
    # token it was given, matches it by MRN and finds the patient eligible.
    body = hook_body(ORDER_SIGN, EHR_ID, fhir_server=ehr.base, draftOrders=referral())
    [card] = cards_of(client.post(f"/cds-services/{ORDER_SIGN}", json=body), r4_validator)
    assert ehr.fhir_requests() == [(f"/fhir/Patient/{EHR_ID}", f"Bearer {EHR_TOKEN}")]
    [action] = card["suggestions"][0]["actions"]
    care_plan = action["resource"]
    assert care_plan["subject"] == {"reference": f"Patient/{EHR_ID}"}

    # The clinician accepts: the EHR creates the CarePlan on its server, and the integration
    # enrols the patient here with it (the subject is this service's Patient).
    assert ehr.client.post("/CarePlan", json=care_plan).status_code == 201
    # The plan's days are past days (see above): it started on day 0, before its sessions.
    here = {"reference": f"Patient/{HERE_ID}"}
    started = {**care_plan.get("period", {}), "start": day(0).date().isoformat()}
    enrolled = client.post("/fhir/CarePlan", json={**care_plan, "subject": here, "period": started})
    assert enrolled.status_code == 201, enrolled.text
    plan_id = enrolled.json()["id"]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": "2026-01-01T10:00:00Z",
            }
        ]
    }
    assert client.post(f"/cds-services/{ORDER_SIGN}/feedback", json=feedback).status_code == 200

    # A session whose pain rises with each repetition: hold back, retry in a week or two.
    rising = session(client, plan_id, HERE_ID, RISING, day(30), "scn-1")
    assert decision_codes(rising)[:2] == ["hold-back", "R4"]
    opens, closes = day(37).date(), day(44).date()

    prefetch = full_prefetch(ehr_patient, [])
    view = hook_body(PATIENT_VIEW, EHR_ID, fhir_server=ehr.base, prefetch=prefetch)
    [held] = cards_of(client.post(f"/cds-services/{PATIENT_VIEW}", json=view), r4_validator)
    assert held["indicator"] == "warning"
    assert held["summary"] == (
        f"Flexion in Lying on hold: retry between {opens.isoformat()} and {closes.isoformat()}"
    )
    assert "**R4** (SRC)" in held["detail"]

    # Booking a flexion visit while the hold lasts warns and suggests the day it opens; a
    # visit inside the window is fine.
    early = appointment(EHR_ID, day(35, 15), appointment_id="visit-early")
    fine = appointment(EHR_ID, day(38, 15), appointment_id="visit-fine")
    booking = hook_body(
        APPOINTMENT_BOOK,
        EHR_ID,
        fhir_server=ehr.base,
        prefetch={"patient": ehr_patient},
        appointments=appointments(early, fine),
    )
    [warning] = cards_of(
        client.post(f"/cds-services/{APPOINTMENT_BOOK}", json=booking), r4_validator
    )
    assert warning["indicator"] == "warning" and opens.isoformat() in warning["summary"]
    moved = warning["suggestions"][0]["actions"][0]["resource"]
    assert moved["id"] == "visit-early" and moved["start"] == f"{opens.isoformat()}T15:00:00Z"

    # After the window opened, a tolerated retry: the plan continues at level 1.
    retry = session(client, plan_id, HERE_ID, WEARING_OFF, day(38) + timedelta(hours=2), "scn-2")
    assert decision_codes(retry)[:3] == ["continue", "R9", "R11"]
    [going] = cards_of(client.post(f"/cds-services/{PATIENT_VIEW}", json=view), r4_validator)
    assert going["indicator"] == "info"
    assert going["summary"] == "Flexion in Lying: continue at level 1"
    assert "**R9** (SRC)" in going["detail"] and "**R11** (SRC)" in going["detail"]
    again = hook_body(
        APPOINTMENT_BOOK,
        EHR_ID,
        fhir_server=ehr.base,
        prefetch={"patient": ehr_patient},
        appointments=appointments(early),
    )
    assert (
        cards_of(client.post(f"/cds-services/{APPOINTMENT_BOOK}", json=again), r4_validator) == []
    )
