"""Bad CDS Hooks calls: each the right status with an OperationOutcome naming the element,
and nothing stored."""

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.api.cds.helpers import (
    APPOINTMENT_BOOK,
    ORDER_SIGN,
    PATIENT_VIEW,
    appointment,
    appointments,
    eligible,
    full_prefetch,
    hook_body,
    outcome,
    owned,
    patient,
    referral,
)
from tests.api.helpers import store_snapshot

GOOD_PATIENT = patient("p-bad", "b-1")


def _prefetch() -> dict[str, Any]:
    return full_prefetch(GOOD_PATIENT, owned(eligible(), "p-bad"))


def _call(service: str, **kw: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if service == ORDER_SIGN:
        extra["draftOrders"] = referral()
    if service == APPOINTMENT_BOOK:
        extra["appointments"] = appointments(appointment("p-bad", datetime(2030, 1, 1, tzinfo=UTC)))
    return hook_body(service, "p-bad", prefetch=_prefetch(), **{**extra, **kw})


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


def _with(body: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _observation_of(other: str) -> dict[str, Any]:
    observation = owned(eligible(), other)[0]
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": observation}]}


BASE = _call(PATIENT_VIEW)
CASES = [
    ("wrong hook", PATIENT_VIEW, _with(BASE, "order-sign", "hook"), 400, "hook"),
    ("no hook", PATIENT_VIEW, _without(BASE, "hook"), 400, "hook"),
    ("no hookInstance", PATIENT_VIEW, _without(BASE, "hookInstance"), 400, "hookInstance"),
    (
        "hookInstance not a UUID",
        PATIENT_VIEW,
        _with(BASE, "call-1", "hookInstance"),
        400,
        "hookInstance",
    ),
    ("no context", PATIENT_VIEW, _without(BASE, "context"), 400, "context"),
    ("context not an object", PATIENT_VIEW, _with(BASE, ["p-bad"], "context"), 400, "context"),
    (
        "no patientId",
        PATIENT_VIEW,
        _without(BASE, "context", "patientId"),
        400,
        "context.patientId",
    ),
    (
        "patientId not an id",
        PATIENT_VIEW,
        _with(BASE, "p/1", "context", "patientId"),
        400,
        "context.patientId",
    ),
    (
        "draftOrders not a Bundle",
        ORDER_SIGN,
        _with(_call(ORDER_SIGN), referral()["entry"][0]["resource"], "context", "draftOrders"),
        400,
        "context.draftOrders",
    ),
    (
        "draftOrders a list",
        ORDER_SIGN,
        _with(_call(ORDER_SIGN), [referral()["entry"][0]["resource"]], "context", "draftOrders"),
        400,
        "context.draftOrders",
    ),
    (
        "no draftOrders",
        ORDER_SIGN,
        _without(_call(ORDER_SIGN), "context", "draftOrders"),
        400,
        "context.draftOrders",
    ),
    (
        "appointments not a Bundle",
        APPOINTMENT_BOOK,
        _with(_call(APPOINTMENT_BOOK), {"resourceType": "Appointment"}, "context", "appointments"),
        400,
        "context.appointments",
    ),
    (
        "another patient's appointment",
        APPOINTMENT_BOOK,
        _with(
            _call(APPOINTMENT_BOOK),
            appointments(appointment("someone-else", datetime(2030, 1, 1, tzinfo=UTC))),
            "context",
            "appointments",
        ),
        400,
        "context.appointments.entry[0].resource.participant",
    ),
    (
        "prefetch patient of the wrong type",
        PATIENT_VIEW,
        _with(BASE, {"resourceType": "Practitioner", "id": "p-bad"}, "prefetch", "patient"),
        400,
        "prefetch.patient",
    ),
    (
        "prefetch patient is another patient",
        PATIENT_VIEW,
        _with(BASE, patient("other", "b-2"), "prefetch", "patient"),
        400,
        "prefetch.patient.id",
    ),
    (
        "prefetch patient not valid R4",
        PATIENT_VIEW,
        _with(BASE, {**GOOD_PATIENT, "birthDate": "yesterday"}, "prefetch", "patient"),
        400,
        "prefetch.patient.birthDate",
    ),
    (
        "prefetch observations not a Bundle",
        PATIENT_VIEW,
        _with(BASE, owned(eligible(), "p-bad")[0], "prefetch", "painScores"),
        400,
        "prefetch.painScores",
    ),
    (
        "prefetch observations of another patient",
        PATIENT_VIEW,
        _with(BASE, _observation_of("other"), "prefetch", "screening"),
        400,
        "prefetch.screening.entry[0].resource.subject",
    ),
    (
        "prefetch entry not an Observation",
        PATIENT_VIEW,
        _with(
            BASE,
            {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": GOOD_PATIENT}]},
            "prefetch",
            "painScores",
        ),
        400,
        "prefetch.painScores.entry[0].resource",
    ),
    ("prefetch not an object", PATIENT_VIEW, _with(BASE, [], "prefetch"), 400, "prefetch"),
    (
        "fhirAuthorization without fhirServer",
        PATIENT_VIEW,
        _with(BASE, {"access_token": "t", "token_type": "Bearer"}, "fhirAuthorization"),
        400,
        "fhirServer",
    ),
    (
        "fhirServer not a URL",
        PATIENT_VIEW,
        _with(BASE, "ehr.example.org", "fhirServer"),
        400,
        "fhirServer",
    ),
]


@pytest.mark.parametrize(
    ("service", "body", "status", "where"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_bad_call_is_refused_and_stores_nothing(
    client, app, service, body, status, where
) -> None:
    before = store_snapshot(app)
    issues = outcome(client.post(f"/cds-services/{service}", json=body), status)
    assert where in issues[0].get("expression", []), issues
    assert store_snapshot(app) == before


def test_prefetched_observations_are_checked_as_r4_when_used(client, app) -> None:
    """An unknown patient's eligibility reads them: an invalid one is a 400 naming it."""
    prefetch = _prefetch()
    prefetch["screening"]["entry"][0]["resource"]["effectiveDateTime"] = "last week"
    before = store_snapshot(app)
    body = _with(BASE, prefetch, "prefetch")
    issues = outcome(client.post(f"/cds-services/{PATIENT_VIEW}", json=body), 400)
    assert issues[0]["expression"] == ["prefetch.screening.entry[0].resource.effectiveDateTime"]
    assert store_snapshot(app) == before


def test_an_unknown_service_is_404(client, app) -> None:
    before = store_snapshot(app)
    issues = outcome(client.post("/cds-services/flexion-nothing", json=BASE), 404)
    assert issues[0]["code"] == "not-found"
    outcome(client.post("/cds-services/flexion-nothing/feedback", json={"feedback": []}), 404)
    assert store_snapshot(app) == before


def test_a_body_that_is_not_json_is_400_and_another_media_type_415(client) -> None:
    url = f"/cds-services/{PATIENT_VIEW}"
    outcome(
        client.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    outcome(client.post(url, content=b"[]", headers={"content-type": "application/json"}), 400)
    outcome(client.post(url, content=b"{}", headers={"content-type": "text/plain"}), 415)


def test_a_service_is_called_with_post_only(client) -> None:
    outcome(client.get(f"/cds-services/{PATIENT_VIEW}"), 405)
    outcome(client.delete("/cds-services"), 405)
