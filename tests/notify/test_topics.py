"""Which change fires which topic, the retry window's times and the filter criteria: pure."""

from datetime import datetime

import pytest

from service.notify import topics
from service.notify.topics import (
    CAREPLAN_CHANGED,
    DECISION_MADE,
    RETRY_WINDOW_CLOSED,
    RETRY_WINDOW_OPENED,
    REVIEW_REQUESTED,
    TOPICS,
    CriteriaError,
    Event,
    parse_criteria,
)
from service.protocol.codes import CAREPLAN_CS, SNOMED, SNOMED_EVALUATION_PROCEDURE

PLAN = {"reference": "CarePlan/cp1"}


def _decision(code: str = "hold-back") -> dict:
    return {
        "resourceType": "GuidanceResponse",
        "id": "gr1",
        "subject": {"reference": "Patient/p1"},
        "result": PLAN,
        "reasonCode": [
            {"coding": [{"system": CAREPLAN_CS, "code": code}]},
            {"coding": [{"system": CAREPLAN_CS, "code": "R4"}]},
        ],
    }


def _review() -> dict:
    return {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "basedOn": [PLAN],
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": SNOMED, "code": SNOMED_EVALUATION_PROCEDURE}]},
        "reasonCode": [{"coding": [{"system": CAREPLAN_CS, "code": "stop-and-refer"}]}],
    }


def _task(start: str = "2026-03-10", end: str = "2026-03-17", **extra: object) -> dict:
    return {
        "resourceType": "Task",
        "id": "t1",
        "status": "requested",
        "code": {"coding": [{"system": CAREPLAN_CS, "code": "retry-flexion"}]},
        "focus": PLAN,
        "basedOn": [PLAN],
        "for": {"reference": "Patient/p1"},
        "authoredOn": "2026-03-03T09:00:00+02:00",
        "reasonCode": {"coding": [{"system": CAREPLAN_CS, "code": "hold-back"}]},
        "restriction": {"period": {"start": start, "end": end}},
        **extra,
    }


def test_the_five_topics_have_canonical_urls_under_the_service_base() -> None:
    assert {t.url for t in TOPICS.values()} == {
        f"https://fhir.flexion-careplan.org/SubscriptionTopic/{name}"
        for name in (
            "decision-made",
            "careplan-changed",
            "retry-window-opened",
            "retry-window-closed",
            "review-requested",
        )
    }
    assert {t.resource for t in TOPICS.values()} == {
        "GuidanceResponse",
        "CarePlan",
        "Task",
        "ServiceRequest",
    }


def test_a_stored_decision_fires_decision_made_with_its_patient_plan_and_code() -> None:
    events = topics.events_for("GuidanceResponse", "gr1", 1, _decision(), created=True)
    assert events == [Event(DECISION_MADE, "GuidanceResponse", "gr1", 1, "p1", "cp1", "hold-back")]


def test_a_guidance_response_without_a_decision_code_fires_nothing() -> None:
    foreign = {**_decision(), "reasonCode": [{"text": "an EHR's own"}]}
    assert topics.events_for("GuidanceResponse", "gr1", 1, foreign, created=True) == []
    # An update of a decision (e.g. entered-in-error) is no new decision.
    assert topics.events_for("GuidanceResponse", "gr1", 2, _decision()) == []


def test_every_care_plan_write_fires_careplan_changed_also_a_deletion() -> None:
    plan = {"resourceType": "CarePlan", "id": "cp1", "subject": {"reference": "Patient/p1"}}
    created = topics.events_for("CarePlan", "cp1", 1, plan, created=True)
    updated = topics.events_for("CarePlan", "cp1", 2, plan)
    deleted = topics.events_for("CarePlan", "cp1", 3, None, previous=plan)
    for events, version in ((created, 1), (updated, 2)):
        assert events == [Event(CAREPLAN_CHANGED, "CarePlan", "cp1", version, "p1", "cp1")]
    assert deleted == [Event(CAREPLAN_CHANGED, "CarePlan", "cp1", 3, "p1", "cp1", deleted=True)]


def test_a_new_evaluation_request_fires_review_requested() -> None:
    events = topics.events_for("ServiceRequest", "sr1", 1, _review(), created=True)
    assert events == [
        Event(REVIEW_REQUESTED, "ServiceRequest", "sr1", 1, "p1", "cp1", "stop-and-refer")
    ]
    other = {**_review(), "code": {"text": "an x-ray"}}
    assert topics.events_for("ServiceRequest", "sr1", 1, other, created=True) == []
    assert topics.events_for("ServiceRequest", "sr1", 2, _review()) == []


@pytest.mark.parametrize("resource_type", ["Observation", "Task", "Patient", "Provenance"])
def test_other_writes_fire_nothing(resource_type: str) -> None:
    body = {"resourceType": resource_type, "id": "x"}
    assert topics.events_for(resource_type, "x", 1, body, created=True) == []


def test_a_retry_window_is_the_patients_days() -> None:
    """Dates are the patient's days (the offset the decision wrote): the window opens at the
    start of the first and closes at the end of the last."""
    opens, closes = topics.window(_task())
    assert opens == datetime(2026, 3, 9, 22, 0)  # 2026-03-10T00:00+02:00
    assert closes == datetime(2026, 3, 17, 22, 0)  # the end of 2026-03-17, +02:00
    timed = _task("2026-03-10T08:00:00Z", "2026-03-17T08:00:00Z")
    assert topics.window(timed) == (datetime(2026, 3, 10, 8), datetime(2026, 3, 17, 8))


def test_a_retry_task_schedules_its_opening_and_closing() -> None:
    assert topics.timers_for("t1", _task()) == [
        topics.Timer(RETRY_WINDOW_OPENED, "t1", datetime(2026, 3, 9, 22, 0)),
        topics.Timer(RETRY_WINDOW_CLOSED, "t1", datetime(2026, 3, 17, 22, 0)),
    ]
    assert topics.timers_for("t1", _task(status="cancelled")) == []
    assert topics.timers_for("t1", {**_task(), "code": {"text": "call back"}}) == []
    assert topics.timers_for("t1", {**_task(), "restriction": {}}) == []


def test_window_events_fire_unless_the_task_ended_or_a_session_came() -> None:
    opened = topics.window_event(RETRY_WINDOW_OPENED, "t1", 1, _task(), retried=False)
    assert opened == Event(RETRY_WINDOW_OPENED, "Task", "t1", 1, "p1", "cp1", "hold-back")
    closed = topics.window_event(RETRY_WINDOW_CLOSED, "t1", 1, _task(), retried=False)
    assert closed is not None and closed.topic == RETRY_WINDOW_CLOSED
    assert topics.window_event(RETRY_WINDOW_CLOSED, "t1", 1, _task(), retried=True) is None
    assert topics.window_event(RETRY_WINDOW_OPENED, "t1", 1, None, retried=False) is None
    done = _task(status="completed")
    assert topics.window_event(RETRY_WINDOW_OPENED, "t1", 2, done, retried=False) is None


def test_filters_narrow_events_and_all_must_hold() -> None:
    topic = TOPICS[DECISION_MADE]
    event = Event(DECISION_MADE, "GuidanceResponse", "gr1", 1, "p1", "cp1", "hold-back")
    cases = {
        ("GuidanceResponse?patient=Patient/p1",): True,
        ("patient=p2,Patient/p1",): True,
        ("patient=Patient/p2",): False,
        ("care-plan=CarePlan/cp1&decision=hold-back",): True,
        ("patient=Patient/p1", "decision=stop-and-refer"): False,
        (f"decision={CAREPLAN_CS}|hold-back",): True,
        (): True,
    }
    for filters, expected in cases.items():
        assert parse_criteria(topic, filters).matches(event) is expected, filters


@pytest.mark.parametrize(
    ("topic", "text", "named"),
    [
        (DECISION_MADE, "Observation?patient=Patient/p1", "not Observation"),
        (CAREPLAN_CHANGED, "decision=hold-back", "cannot be filtered by 'decision'"),
        (DECISION_MADE, "status=active", "cannot be filtered by 'status'"),
        (DECISION_MADE, "decision=maybe", "'maybe' is not a decision code"),
        (DECISION_MADE, "decision=http://other|hold-back", "not 'http://other'"),
        (DECISION_MADE, "patient=Practitioner/1", "patient takes Patient/<id>"),
        (DECISION_MADE, "patient:missing=true", "modifiers are not supported"),
        (DECISION_MADE, "patient", "is not name=value"),
        (DECISION_MADE, "GuidanceResponse?", "has no criteria"),
    ],
)
def test_unsupported_filters_say_what(topic: str, text: str, named: str) -> None:
    with pytest.raises(CriteriaError, match=named.replace("?", r"\?").replace("|", r"\|")):
        parse_criteria(TOPICS[topic], [text])


def test_the_patients_a_subscription_is_limited_to() -> None:
    topic = TOPICS[DECISION_MADE]
    assert parse_criteria(topic, ["decision=hold-back"]).patients() is None
    assert parse_criteria(topic, ["patient=p1,p2"]).patients() == {"p1", "p2"}
    both = parse_criteria(topic, ["patient=p1,p2", "patient=Patient/p2"])
    assert both.patients() == {"p2"}
