"""The plan state each decision carries forward, through HTTP and the store (history.py).

A decision reads the plan state from the latest stored GuidanceResponse. Decisions stored
before GuidanceResponses carried it (no `state-*` parameters) are still read: the store then
returns the look-back window of decisions and the core folds them.
"""

import pytest

from tests.api.scenario import day, decision_codes, eligible_patient, enrol, part, put, submit

WEARING_OFF = [3, 2, 1, 1, 0]


@pytest.fixture
def plan_id(client) -> str:
    eligible_patient(client, day(0))
    eligible_patient(client)
    return enrol(client)


def _features(guidance: dict) -> dict:
    parameters = guidance["contained"][0]["parameter"]
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in parameters}


def _six_tolerated_days(client, plan_id: str) -> list[dict]:
    decisions = []
    for n in range(1, 7):
        response = submit(client, plan_id, WEARING_OFF, day(n), sid=f"day-{n}")
        assert response.status_code == 200, response.text
        decisions.append(part(response.json(), "decision"))
    return decisions


def test_each_decision_carries_the_plan_state_after_it(client, plan_id):
    decisions = _six_tolerated_days(client, plan_id)
    latest = _features(decisions[-1])
    assert latest["state-level"] == 1
    assert latest["state-started"] is True and latest["state-on-hold"] is False
    assert latest["state-tolerated-days"].split(",") == [
        day(n).date().isoformat() for n in range(1, 7)
    ]
    answer = submit(client, plan_id, WEARING_OFF, day(7), sid="day-7").json()
    assert decision_codes(answer)[:3] == ["progress", "R9", "R10"]
    assert _features(part(answer, "decision"))["state-level"] == 2


def test_decisions_stored_without_the_state_are_folded_as_before(client, plan_id):
    """Data from before the upgrade: the same seventh tolerated day still progresses."""
    for guidance in _six_tolerated_days(client, plan_id):
        features = guidance["contained"][0]
        kept = [p for p in features["parameter"] if not p["name"].startswith("state-")]
        stripped = {**guidance, "contained": [{**features, "parameter": kept}]}
        stripped.pop("meta")
        put(client, stripped)
    stored = client.get(
        f"/fhir/GuidanceResponse?subject=Patient/{stripped['subject']['reference'].partition('/')[2]}"
    ).json()
    assert all(
        not any(p["name"].startswith("state-") for p in e["resource"]["contained"][0]["parameter"])
        for e in stored["entry"]
    )
    answer = submit(client, plan_id, WEARING_OFF, day(7), sid="day-7").json()
    assert decision_codes(answer)[:3] == ["progress", "R9", "R10"]
    assert _features(part(answer, "decision"))["consecutive-tolerated-days"] == 7


def test_a_session_that_arrives_late_counts_in_time_order(client, plan_id):
    """A patient app syncs day 4 after days 5 and 6: day 7 still makes seven days in a row.

    The store sees a decision dated before the newest one but stored after it, and hands the
    core the whole window, which it folds in time order.
    """
    for n in (1, 2, 3, 5, 6, 4):
        response = submit(client, plan_id, WEARING_OFF, day(n), sid=f"day-{n}")
        assert response.status_code == 200, response.text
    answer = submit(client, plan_id, WEARING_OFF, day(7), sid="day-7").json()
    assert decision_codes(answer)[:3] == ["progress", "R9", "R10"]
    assert _features(part(answer, "decision"))["consecutive-tolerated-days"] == 7
