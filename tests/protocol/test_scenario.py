"""A patient walked through weeks of the protocol, decision by decision."""

from __future__ import annotations

from datetime import date, timedelta

from service.protocol.history import (
    CONTINUE,
    HOLD_BACK,
    PROGRESS,
    START,
    STOP_AND_REFER,
    SUPERVISION_REQUIRED,
)
from tests.protocol.builders import (
    Timeline,
    at,
    eligible_state,
    episode_phase,
    red_flag_screen,
)

OK = [2, 1, 1, 0, 0]
RISING = [1, 2, 3, 4, 5]


def test_weeks_of_the_protocol() -> None:
    t = Timeline(observations=eligible_state(at(0)))
    start, _ = t.evaluate(at(0, 8))
    assert start.code == START

    assert t.submit(OK, at(0, 10))[0].code == CONTINUE
    hold, out = t.submit(RISING, at(1, 10))
    assert (hold.code, hold.retry_start, hold.retry_end) == (
        HOLD_BACK,
        date(2025, 3, 11),
        date(2025, 3, 18),
    )
    assert out.task and out.task["restriction"]["period"]["start"] == "2025-03-11"

    early, early_out = t.submit(OK, at(5, 10))  # before the window: the same hold, not a retry
    assert (early.code, early.retry_start, early_out.task) == (HOLD_BACK, hold.retry_start, None)

    retry, _ = t.submit(OK, at(8, 10))  # seven days later: tolerated, resumes at level 1
    assert (retry.code, retry.level_new, "R11" in retry.rule_ids) == (CONTINUE, 1, True)

    decision = retry
    for day in range(9, 15):
        decision, _ = t.submit(OK, at(day, 10))
    assert (decision.code, decision.level_new) == (PROGRESS, 2)
    assert decision.features["consecutive-tolerated-days"] == 7

    # a second hold-back within 28 days of the first asks for a clinician review (R6)
    second, out2 = t.submit(RISING, at(15, 10))
    assert second.code == HOLD_BACK and "R6" in second.rule_ids
    assert out2.service_request is not None


def test_acute_unsupervised_then_supervised() -> None:
    t = Timeline(
        observations=[
            episode_phase(at(0), "acute"),
            red_flag_screen(at(0)),
        ]
    )
    assert t.evaluate(at(0, 10))[0].code == SUPERVISION_REQUIRED
    assert t.submit(OK, at(1, 10))[0].code == SUPERVISION_REQUIRED
    assert t.submit(OK, at(2, 10), supervised=True)[0].code == CONTINUE


def test_red_flag_then_stays_stopped_until_a_clinician_resumes() -> None:
    t = Timeline(observations=eligible_state(at(0)))
    t.submit(OK, at(0, 10))
    t.observations.append(red_flag_screen(at(1, 9), ("history-of-cancer",), rid="rf-pos"))
    stop, _ = t.submit(OK, at(1, 10))
    assert (stop.code, stop.urgent) == (STOP_AND_REFER, True)
    t.observations.append(red_flag_screen(at(2, 9), rid="rf-clear"))
    again, _ = t.submit(OK, at(2, 10))
    assert (again.code, again.rule_ids) == (STOP_AND_REFER, ("R1",))
    # the clinician sets the flexion activity back in progress
    for activity in t.care_plan["activity"]:
        activity["detail"]["status"] = "in-progress"
    assert t.submit(OK, at(3, 10))[0].code == CONTINUE


def test_peripheralization_stops() -> None:
    t = Timeline(observations=eligible_state(at(0)))
    d, out = t.submit(OK, at(0, 10), location_start="central", location_end="below-knee")
    assert (d.code, d.rule_ids, d.urgent) == (STOP_AND_REFER, ("R2",), False)
    assert out.detected_issues[0]["severity"] == "high"


def test_replay_gives_the_same_decision() -> None:
    """Re-deciding a stored session with its own decision in the history changes nothing."""
    t = Timeline(observations=eligible_state(at(0)))
    t.submit(OK, at(0, 10))
    first, _ = t.submit(RISING, at(1, 10))
    from service.protocol.decide import decide
    from tests.protocol.builders import session

    replay = decide(t.plan, t.record(), session(RISING, at(1, 10)), at(1, 10))
    assert (replay.code, replay.retry_start, replay.features) == (
        first.code,
        first.retry_start,
        first.features,
    )
    assert replay.clock - timedelta(0) == first.clock
