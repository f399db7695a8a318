"""appointment-book: a proposed flexion visit before a hold-back's retry window opens, or on a
stopped plan, gets a warning with the date the window opens (or the pending review) and a
suggestion to move (or cancel) it; nothing when the plan allows the visit."""

from datetime import date, datetime, time, timedelta
from typing import Any

from tests.api.cds.helpers import (
    APPOINTMENT_BOOK,
    appointment,
    appointments,
    cards_of,
    hook_body,
)
from tests.api.cds.plans import continuing, on_hold, stopped
from tests.api.helpers import store_snapshot

URL = f"/cds-services/{APPOINTMENT_BOOK}"


def book(client: Any, validator: Any, patient_id: str, *visits: dict[str, Any]) -> list[Any]:
    body = hook_body(
        APPOINTMENT_BOOK,
        patient_id,
        fhir_server="http://testserver/fhir",
        appointments=appointments(*visits),
    )
    return cards_of(client.post(URL, json=body), validator)


def window(decision: dict[str, Any]) -> tuple[date, date]:
    features = {p["name"]: p for p in decision["contained"][0]["parameter"]}
    return (
        date.fromisoformat(features["state-retry-window-start"]["valueDate"]),
        date.fromisoformat(features["state-retry-window-end"]["valueDate"]),
    )


def at(day: date, hour: int = 10) -> datetime:
    from datetime import UTC

    return datetime.combine(day, time(hour), tzinfo=UTC)


def test_a_visit_before_the_window_opens_warns_and_moves_it(client, r4_validator, app) -> None:
    _, decision = on_hold(client, "ab-hold", "a-1")
    opens, closes = window(decision)
    early = appointment("ab-hold", at(opens - timedelta(days=3), 14))
    before = store_snapshot(app)
    [card] = book(client, r4_validator, "ab-hold", early)
    assert store_snapshot(app) == before
    assert card["indicator"] == "warning"
    assert f"until {opens.isoformat()}" in card["summary"]
    assert f"The retry window is {opens.isoformat()} to {closes.isoformat()}" in card["detail"]
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    moved = action["resource"]
    assert action["type"] == "update" and moved["id"] == "apt-1"
    assert moved["start"] == f"{opens.isoformat()}T14:00:00Z"
    assert moved["end"] == f"{opens.isoformat()}T14:30:00Z"
    assert card["selectionBehavior"] == "at-most-one"


def test_a_visit_inside_the_window_is_allowed(client, r4_validator) -> None:
    _, decision = on_hold(client, "ab-ok", "a-2")
    opens, closes = window(decision)
    assert book(client, r4_validator, "ab-ok", appointment("ab-ok", at(opens))) == []
    assert (
        book(client, r4_validator, "ab-ok", appointment("ab-ok", at(closes + timedelta(days=2))))
        == []
    )


def test_only_flexion_visits_count(client, r4_validator) -> None:
    _, decision = on_hold(client, "ab-other", "a-3")
    opens, _ = window(decision)
    dentist = appointment("ab-other", at(opens - timedelta(days=2)), code="109564008")
    assert book(client, r4_validator, "ab-other", dentist) == []
    exercise = appointment("ab-other", at(opens - timedelta(days=2)), code="229065009")
    assert len(book(client, r4_validator, "ab-other", dentist, exercise)) == 1


def test_a_stopped_plan_warns_of_the_pending_review_and_suggests_cancelling(
    client, r4_validator
) -> None:
    stopped(client, "ab-stop", "a-4")
    [card] = book(
        client,
        r4_validator,
        "ab-stop",
        appointment("ab-stop", at(date.today() + timedelta(days=3))),
    )
    assert card["indicator"] == "critical"
    assert "pending clinician review" in card["summary"]
    assert "open review ServiceRequest/" in card["detail"]
    [action] = card["suggestions"][0]["actions"]
    assert action["resource"]["status"] == "cancelled"


def test_a_plan_paused_by_a_clinician_warns(client, r4_validator) -> None:
    care_plan_id = continuing(client, "ab-pause", "a-6")
    read = client.get(f"/fhir/CarePlan/{care_plan_id}")
    paused = {**read.json(), "status": "on-hold"}
    version = {"If-Match": read.headers["ETag"]}
    assert (
        client.put(f"/fhir/CarePlan/{care_plan_id}", json=paused, headers=version).status_code
        == 200
    )
    soon = appointment("ab-pause", at(date.today() + timedelta(days=2)))
    [card] = book(client, r4_validator, "ab-pause", soon)
    assert card["indicator"] == "warning" and "paused by a clinician" in card["summary"]
    assert card["suggestions"][0]["actions"][0]["resource"]["status"] == "cancelled"


def test_a_plan_that_allows_the_visit_gives_nothing(client, r4_validator) -> None:
    continuing(client, "ab-go", "a-5")
    assert (
        book(
            client,
            r4_validator,
            "ab-go",
            appointment("ab-go", at(date.today() + timedelta(days=1))),
        )
        == []
    )


def test_a_patient_without_a_plan_gives_nothing(client, r4_validator) -> None:
    assert (
        book(client, r4_validator, "nobody-here", appointment("nobody-here", at(date.today())))
        == []
    )
