"""patient-view: the plan as one card from this service's records (decision, rules with their
sentences, retry window, open reviews), or for a patient without a plan an enrolment
suggestion when eligible and no card when not. Nothing is stored by a call."""

from typing import Any

from service.protocol.codes import PLAN_DEFINITION_URL
from tests.api.cds.helpers import (
    MRN_SYSTEM,
    PATIENT_VIEW,
    acute,
    cards_of,
    eligible,
    full_prefetch,
    hook_body,
    known_patient,
    owned,
    patient,
)
from tests.api.cds.plans import continuing, enrolled, on_hold, stopped
from tests.api.helpers import store_snapshot

URL = f"/cds-services/{PATIENT_VIEW}"


def view(client: Any, validator: Any, patient_id: str, **kw: Any) -> list[dict[str, Any]]:
    """patient-view with fhirServer = this service (its patient ids are ours)."""
    body = hook_body(PATIENT_VIEW, patient_id, fhir_server="http://testserver/fhir", **kw)
    return cards_of(client.post(URL, json=body), validator)


def test_a_held_back_plan_shows_the_hold_its_rules_and_window(client, r4_validator, app) -> None:
    care_plan, decision = on_hold(client, "pv-hold", "m-1")
    features = {p["name"]: p for p in decision["contained"][0]["parameter"]}
    start = features["state-retry-window-start"]["valueDate"]
    end = features["state-retry-window-end"]["valueDate"]
    before = store_snapshot(app)
    [card] = view(client, r4_validator, "pv-hold")
    assert store_snapshot(app) == before  # a hook call stores nothing
    assert card["indicator"] == "warning"
    assert start in card["summary"] and end in card["summary"]
    assert card["source"]["url"] == PLAN_DEFINITION_URL
    assert "version 1.0.0" in card["source"]["label"]
    detail = card["detail"]
    assert f"CarePlan/{care_plan}" in detail and f"GuidanceResponse/{decision['id']}" in detail
    assert (
        "**R4** (SRC): If this exercise causes pain that increases with each repetition" in detail
    )
    assert f"**Retry window:** {start} to {end} (Task/" in detail
    assert card["overrideReasons"] and all(r["display"] for r in card["overrideReasons"])


def test_a_stopped_plan_is_critical_and_lists_the_open_review(client, r4_validator) -> None:
    care_plan = stopped(client, "pv-stop", "m-2")
    reviews = client.get(f"/fhir/ServiceRequest?based-on=CarePlan/{care_plan}").json()["entry"]
    [card] = view(client, r4_validator, "pv-stop")
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Flexion in Lying stopped")
    assert "**R2** (LIT): symptoms peripheralized" in card["detail"]
    assert f"ServiceRequest/{reviews[0]['resource']['id']}" in card["detail"]


def test_a_continuing_plan_is_info(client, r4_validator) -> None:
    continuing(client, "pv-cont", "m-3")
    [card] = view(client, r4_validator, "pv-cont")
    assert card["indicator"] == "info"
    assert card["summary"] == "Flexion in Lying: continue at level 1"
    assert "**R9** (SRC)" in card["detail"]
    assert "suggestions" not in card


def test_a_plan_without_decisions_yet(client, r4_validator) -> None:
    enrolled(client, "pv-new", "m-4")
    [card] = view(client, r4_validator, "pv-new")
    assert card["indicator"] == "info"
    assert "no session decided yet" in card["summary"]


def test_an_eligible_patient_without_a_plan_gets_an_enrolment_suggestion(
    client, r4_validator, app
) -> None:
    known_patient(client, "pv-elig", "m-5", eligible())
    before = store_snapshot(app)
    [card] = view(client, r4_validator, "pv-elig")
    assert store_snapshot(app) == before
    assert card["indicator"] == "info" and card["selectionBehavior"] == "at-most-one"
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    care_plan = action["resource"]
    assert action["type"] == "create" and care_plan["resourceType"] == "CarePlan"
    assert care_plan["subject"] == {"reference": "Patient/pv-elig"}
    assert care_plan["status"] == "active"
    assert "**R8** (SRC)" in card["detail"]
    # The suggested CarePlan is the one $apply gives, and enrols when posted here.
    applied = client.get(
        "/fhir/PlanDefinition/flexion-in-lying-protocol/$apply?subject=Patient/pv-elig"
    ).json()
    assert care_plan["activity"] == applied["activity"]
    assert client.post("/fhir/CarePlan", json=care_plan).status_code == 201


def test_a_patient_without_a_plan_who_is_not_eligible_gets_no_card(client, r4_validator) -> None:
    known_patient(client, "pv-acute", "m-6", acute())
    assert view(client, r4_validator, "pv-acute") == []


def test_a_patient_the_service_does_not_know_is_judged_on_the_prefetch(
    client, r4_validator, ehr
) -> None:
    ehr_patient = patient("ehr-new-1", "unknown-mrn-1")
    body = hook_body(
        PATIENT_VIEW,
        "ehr-new-1",
        fhir_server=ehr.base,
        prefetch=full_prefetch(ehr_patient, owned(eligible(), "ehr-new-1")),
    )
    [card] = cards_of(client.post(URL, json=body), r4_validator)
    assert card["suggestions"][0]["actions"][0]["resource"]["subject"] == {
        "reference": "Patient/ehr-new-1"
    }
    assert ehr.fhir_requests() == []  # everything came prefetched
    not_eligible = hook_body(
        PATIENT_VIEW,
        "ehr-new-2",
        fhir_server=ehr.base,
        prefetch=full_prefetch(patient("ehr-new-2", "unknown-mrn-2"), owned(acute(), "ehr-new-2")),
    )
    assert cards_of(client.post(URL, json=not_eligible), r4_validator) == []


def test_the_ehr_patient_is_matched_by_a_trusted_identifier(client, r4_validator, ehr) -> None:
    on_hold(client, "pv-match", "mrn-match")
    ehr_patient = patient("ehr-77", "mrn-match")
    body = hook_body(
        PATIENT_VIEW, "ehr-77", fhir_server=ehr.base, prefetch={"patient": ehr_patient}
    )
    [card] = cards_of(client.post(URL, json=body), r4_validator)
    assert card["indicator"] == "warning" and "CarePlan/" in card["detail"]
    # The same value in a system that is not trusted names nobody here.
    untrusted = {**ehr_patient, "identifier": [{"system": "urn:other", "value": "mrn-match"}]}
    body = hook_body(PATIENT_VIEW, "ehr-77", fhir_server=ehr.base, prefetch={"patient": untrusted})
    assert cards_of(client.post(URL, json=body), r4_validator) == []


def test_an_identifier_shared_by_two_patients_here_shows_nothing(client, r4_validator, ehr) -> None:
    on_hold(client, "pv-twin-a", "mrn-twin")
    known_patient(client, "pv-twin-b", "mrn-twin", eligible())
    body = hook_body(
        PATIENT_VIEW,
        "ehr-twin",
        fhir_server=ehr.base,
        prefetch={"patient": patient("ehr-twin", "mrn-twin")},
    )
    assert cards_of(client.post(URL, json=body), r4_validator) == []


def test_the_same_call_gives_the_same_card_uuids(client, r4_validator) -> None:
    on_hold(client, "pv-same", "m-8")
    instance = "5d7c7e3a-9a0b-4f8e-8f53-0c5e1c9d2b11"
    first = view(client, r4_validator, "pv-same", instance=instance)
    again = view(client, r4_validator, "pv-same", instance=instance)
    other = view(client, r4_validator, "pv-same")
    assert first == again
    assert first[0]["uuid"] != other[0]["uuid"]


def test_trusted_systems_are_a_setting(client) -> None:
    assert client.app.state.cds.trusted_systems == frozenset({MRN_SYSTEM})
