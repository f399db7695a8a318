"""order-sign: a draft referral for low back pain gets an enrolment suggestion (the CarePlan as
a create action), or why not yet: acute phase (supervised only), a red flag (refer), missing
data. Other orders get no card; an enrolled patient gets the plan's card."""

from typing import Any

import pytest

from tests.api.cds.helpers import (
    ORDER_SIGN,
    acute,
    cards_of,
    eligible,
    full_prefetch,
    hook_body,
    known_patient,
    owned,
    patient,
    red_flag,
    referral,
)
from tests.api.cds.plans import on_hold
from tests.api.helpers import store_snapshot

URL = f"/cds-services/{ORDER_SIGN}"


def sign(
    client: Any, validator: Any, patient_id: str, orders: dict[str, Any], **kw: Any
) -> list[Any]:
    body = hook_body(
        ORDER_SIGN, patient_id, fhir_server="http://testserver/fhir", draftOrders=orders, **kw
    )
    return cards_of(client.post(URL, json=body), validator)


@pytest.mark.parametrize("reason", ["279039007", "278860009"])
def test_a_referral_for_low_back_pain_suggests_enrolment(client, r4_validator, app, reason) -> None:
    known_patient(client, "os-elig", "o-1", eligible())
    before = store_snapshot(app)
    [card] = sign(client, r4_validator, "os-elig", referral(reason))
    assert store_snapshot(app) == before
    assert card["indicator"] == "info"
    assert card["summary"].startswith("Eligible for Flexion in Lying: enrol at level 1")
    [suggestion] = card["suggestions"]
    assert suggestion["isRecommended"] is True
    [action] = suggestion["actions"]
    assert action["type"] == "create"
    assert action["resource"]["resourceType"] == "CarePlan"
    assert action["resource"]["subject"] == {"reference": "Patient/os-elig"}
    assert {r["code"] for r in card["overrideReasons"]} >= {"patient-ineligible"}


def test_other_orders_get_no_card(client, r4_validator) -> None:
    known_patient(client, "os-other", "o-2", eligible())
    assert sign(client, r4_validator, "os-other", referral("22298006")) == []
    assert sign(client, r4_validator, "os-other", referral(status="active")) == []


def test_acute_phase_says_supervised_only(client, r4_validator) -> None:
    known_patient(client, "os-acute", "o-3", acute())
    [card] = sign(client, r4_validator, "os-acute", referral())
    assert card["indicator"] == "warning"
    assert "only under qualified supervision" in card["summary"]
    assert "**R3** (SRC): on the acute stage" in card["detail"]
    assert "suggestions" not in card


def test_a_red_flag_says_refer(client, r4_validator) -> None:
    known_patient(client, "os-flag", "o-4", red_flag())
    [card] = sign(client, r4_validator, "os-flag", referral())
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Red flag positive: refer")
    assert "**R1** (LIT)" in card["detail"]


def test_missing_data_says_what_is_missing(client, r4_validator) -> None:
    known_patient(client, "os-none", "o-5", [])
    [card] = sign(client, r4_validator, "os-none", referral())
    assert card["indicator"] == "info"
    assert "a red-flag screen" in card["summary"] and "the episode phase" in card["summary"]
    assert "**R0** (DESIGN)" in card["detail"]


def test_an_enrolled_patient_gets_the_plan_card(client, r4_validator) -> None:
    on_hold(client, "os-plan", "o-6")
    [card] = sign(client, r4_validator, "os-plan", referral())
    assert card["indicator"] == "warning" and "on hold" in card["summary"]


def test_a_patient_unknown_here_is_judged_on_the_ehr_data(client, r4_validator, ehr) -> None:
    prefetch = full_prefetch(patient("ehr-os-1", "o-unknown"), owned(red_flag(), "ehr-os-1"))
    body = hook_body(
        ORDER_SIGN, "ehr-os-1", fhir_server=ehr.base, prefetch=prefetch, draftOrders=referral()
    )
    [card] = cards_of(client.post(URL, json=body), r4_validator)
    assert card["indicator"] == "critical"
