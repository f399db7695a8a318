"""One test per rule and warning of the decision table, plus the threshold boundaries."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from service.protocol.history import (
    CONTINUE,
    DATA_REQUIRED,
    HOLD_BACK,
    NOT_YET_ELIGIBLE,
    PROGRESS,
    START,
    STOP_AND_REFER,
    SUPERVISION_REQUIRED,
)
from tests.protocol.builders import (
    Timeline,
    at,
    daily_pain,
    eligible_state,
    episode_phase,
    extension_program,
    pain_days,
    plan_definition,
    red_flag_screen,
)
from tests.protocol.helpers import CLOCK, decide_apply, decide_session

TOLERATED = [2, 1, 1, 0, 0]


# R0 -------------------------------------------------------------------------------------------
def test_R0_too_few_repetitions_scored_is_data_required() -> None:
    """R0: "a session has fewer than [3] repetitions scored" -> data-required."""
    d = decide_session([1, None, None, 1])
    assert (d.code, d.rule_ids) == (DATA_REQUIRED, ("R0",))
    assert d.data_requirements and d.data_requirements[0]["type"] == "Observation"


@pytest.mark.parametrize(("scored", "code"), [(2, DATA_REQUIRED), (3, CONTINUE), (4, CONTINUE)])
def test_R0_boundary_min_repetitions_scored(scored: int, code: str) -> None:
    assert decide_session([1] * scored).code == code


def test_R0_missing_eligibility_inputs_before_start() -> None:
    """R0: "eligibility inputs are missing before a start" -> data-required naming them."""
    d = decide_apply([*pain_days(CLOCK, [0] * 14)])
    assert d.code == DATA_REQUIRED
    assert [r["id"] for r in d.data_requirements] == ["red-flag-screen", "episode-phase"]


# R1 -------------------------------------------------------------------------------------------
def test_R1_positive_red_flag_stops_and_refers_urgently() -> None:
    """R1: "a red flag is positive (...)" -> stop-and-refer, urgent."""
    flag = red_flag_screen(CLOCK - timedelta(days=1), ("saddle-numbness",), rid="rf-pos")
    d = decide_session(TOLERATED, extra=[flag])
    assert (d.code, d.rule_ids, d.urgent, d.review_requested) == (
        STOP_AND_REFER,
        ("R1",),
        True,
        True,
    )
    assert d.features["red-flag-items"] == "saddle-numbness"
    assert decide_apply([*eligible_state(CLOCK), flag]).code == STOP_AND_REFER


@pytest.mark.parametrize(
    ("days_ago", "code"), [(29, STOP_AND_REFER), (30, STOP_AND_REFER), (31, DATA_REQUIRED)]
)
def test_R1_boundary_red_flag_lookback(days_ago: int, code: str) -> None:
    state = [episode_phase(CLOCK - timedelta(days=40), "recovering"), *pain_days(CLOCK, [0] * 14)]
    flag = red_flag_screen(CLOCK - timedelta(days=days_ago), ("fever",))
    assert decide_apply([*state, flag]).code == code


def test_R1_latest_screen_wins() -> None:
    positive = red_flag_screen(CLOCK - timedelta(days=5), ("fever",), rid="rf-old")
    negative = red_flag_screen(CLOCK - timedelta(days=1), rid="rf-new")
    assert decide_session(TOLERATED, extra=[positive, negative]).code == CONTINUE


def test_R1_red_flag_questionnaire_response() -> None:
    qr = {
        "resourceType": "QuestionnaireResponse",
        "id": "qr1",
        "status": "completed",
        "questionnaire": "https://fhir.flexion-careplan.org/Questionnaire/red-flag-screen",
        "authored": (CLOCK - timedelta(hours=2)).isoformat(),
        "item": [
            {
                "linkId": "red-flag-screen",
                "item": [
                    {"linkId": "fever", "answer": [{"valueBoolean": True}]},
                    {"linkId": "major-trauma", "answer": [{"valueBoolean": False}]},
                ],
            }
        ],
    }
    from service.protocol.decide import decide
    from tests.protocol.builders import record, session

    rec = record(eligible_state(CLOCK), questionnaire_responses=(qr,))
    d = decide(plan_definition(), rec, session(TOLERATED, CLOCK), CLOCK)
    assert (d.code, d.features["red-flag-items"]) == (STOP_AND_REFER, "fever")


# R2 -------------------------------------------------------------------------------------------
def test_R2_peripheralized_session_stops_and_refers() -> None:
    """R2: "symptoms peripheralized during the session (pain moved away from the spine)"."""
    d = decide_session(TOLERATED, location_start="central", location_end="buttock-thigh")
    assert (d.code, d.rule_ids, d.urgent, d.review_requested) == (
        STOP_AND_REFER,
        ("R2",),
        False,
        True,
    )


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        ("one-side", "buttock-thigh", STOP_AND_REFER),
        ("buttock-thigh", "below-knee", STOP_AND_REFER),
        ("one-side", "one-side", CONTINUE),  # wearing off: acceptable
        ("buttock-thigh", "central", CONTINUE),  # centralization is good
        (None, "below-knee", CONTINUE),  # not reported is not evidence
    ],
)
def test_R2_boundary_location_order(start: str | None, end: str, code: str) -> None:
    assert decide_session(TOLERATED, location_start=start, location_end=end).code == code


# R3 -------------------------------------------------------------------------------------------
def _acute() -> list[dict]:
    return [
        episode_phase(CLOCK - timedelta(days=3), "acute"),
        red_flag_screen(CLOCK - timedelta(days=1)),
    ]


def test_R3_acute_unsupervised_requires_supervision() -> None:
    """R3: "on the acute stage of a back pain episode it needs to be performed under the qualified
    supervision"."""
    d = decide_session(TOLERATED, state=_acute(), supervised=False)
    assert (d.code, d.rule_ids) == (SUPERVISION_REQUIRED, ("R3",))
    # supervision not reported cannot be assumed
    assert decide_session(TOLERATED, state=_acute(), supervised=None).code == SUPERVISION_REQUIRED
    # a supervised session is decided by R4-R11 like any other
    assert decide_session(TOLERATED, state=_acute(), supervised=True).code == CONTINUE
    assert decide_session([0, 1, 2, 3, 4], state=_acute(), supervised=True).code == HOLD_BACK
    # $apply in the acute phase
    assert decide_apply(_acute()).code == SUPERVISION_REQUIRED


# R4 -------------------------------------------------------------------------------------------
def test_R4_rising_session_holds_back() -> None:
    """R4: "If this exercise causes pain that increases with each repetition, stop ... wait and
    try it in another week or two." -> hold-back, retry in [7, 14] days."""
    d = decide_session([1, 2, 3, 3, 4])
    assert (d.code, d.rule_ids) == (HOLD_BACK, ("R4",))
    assert (d.retry_start, d.retry_end) == (date(2025, 4, 9), date(2025, 4, 16))
    assert d.hold_is_new and not d.review_requested


@pytest.mark.parametrize(
    ("reps", "pattern"),
    [
        ([1, 1, 1, 2, 2], "stable"),  # increase 1 < 2
        ([1, 1, 1, 2, 3], "rising"),  # increase 2 == 2
        ([1, 3, 2, 3, 3], "rising"),  # step down 1 allowed
        ([1, 4, 2, 3, 4], "stable"),  # step down 2 too large
        ([0, 3], "stable"),  # fewer than 3 repetitions
        ([0, 1, 3], "rising"),  # exactly 3 repetitions
    ],
)
def test_R4_boundary_rising_definition(reps: list[int], pattern: str) -> None:
    pd = plan_definition(min_repetitions_scored=2)
    assert decide_session(reps, pd=pd).features["pattern"] == pattern


# R5 -------------------------------------------------------------------------------------------
def test_R5_severe_repetition_holds_back_with_review() -> None:
    """R5: "any repetition scored >= [7]" -> hold-back with a clinician review request."""
    d = decide_session([7, 6, 5, 4, 4])
    assert (d.code, d.rule_ids, d.review_requested) == (HOLD_BACK, ("R5",), True)


@pytest.mark.parametrize(("top", "code"), [(6, CONTINUE), (7, HOLD_BACK), (8, HOLD_BACK)])
def test_R5_boundary_severe_threshold(top: int, code: str) -> None:
    assert decide_session([top, 6, 5, 4, 4]).code == code


def test_R5_fires_beside_R4() -> None:
    assert decide_session([3, 4, 5, 6, 8]).rule_ids == ("R4", "R5")


def test_R5_threshold_is_read_from_the_plan_definition() -> None:
    """A clinic publishing severe-pain-threshold 6 as version 2.0.0 changes the decision."""
    pd = plan_definition("2.0.0", severe_pain_threshold=6)
    d = decide_session([6, 6, 5, 4, 4], pd=pd)
    assert d.code == HOLD_BACK
    assert d.plan_canonical.endswith("|2.0.0")
    assert decide_session([6, 6, 5, 4, 4]).code == CONTINUE


# R6 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("second_day", "r6"), [(7, True), (28, True), (29, False)])
def test_R6_second_hold_back_within_window_requests_review(second_day: int, r6: bool) -> None:
    """R6: "an earlier hold-back of this plan lies within [28] days" -> still hold-back, and a
    clinician review request is added."""
    t = Timeline(observations=eligible_state(at(0)))
    t.submit([1, 2, 3, 4, 5], at(0, 10))
    d, _ = t.submit([1, 2, 3, 4, 5], at(second_day, 10))
    assert d.code == HOLD_BACK
    assert ("R6" in d.rule_ids) is r6
    assert d.review_requested is r6


# R7 / R8 ----------------------------------------------------------------------------------------
def _criterion_a(pain_free: int, window: int = 14) -> list[dict]:
    return [
        episode_phase(CLOCK - timedelta(days=30), "recovering"),
        red_flag_screen(CLOCK - timedelta(days=1)),
        daily_pain(CLOCK, 0),  # today
        *pain_days(CLOCK, [1] * (window - pain_free) + [0] * (pain_free - 1)),
    ]


def test_R7_not_eligible_rechecks_in_a_week() -> None:
    """R7: "no session yet, self-directed, and neither criterion A nor B holds" ->
    not-yet-eligible, re-check in [7] days."""
    d = decide_apply(_criterion_a(9))
    assert (d.code, d.rule_ids) == (NOT_YET_ELIGIBLE, ("R7",))
    assert d.recheck_date == date(2025, 4, 9)


def test_R8_criterion_A_starts_level_1() -> None:
    """R8 / criterion A: "mostly recovered from an acute episode ... long pain-free periods for
    two to three weeks" -> start at level 1."""
    d = decide_apply(_criterion_a(10))
    assert (d.code, d.rule_ids, d.level_new) == (START, ("R8",), 1)
    assert d.features["criterion-a"] is True


@pytest.mark.parametrize(("pain_free", "code"), [(9, NOT_YET_ELIGIBLE), (10, START), (11, START)])
def test_R8_boundary_criterion_A_pain_free_days(pain_free: int, code: str) -> None:
    assert decide_apply(_criterion_a(pain_free)).code == code


def test_R8_criterion_A_needs_a_non_acute_phase() -> None:
    state = [episode_phase(CLOCK - timedelta(days=1), "acute"), *_criterion_a(14)[1:]]
    assert decide_apply(state).code == SUPERVISION_REQUIRED


def _criterion_b(days: int, baseline: int, current: int, location: str = "central") -> list[dict]:
    return [
        episode_phase(CLOCK - timedelta(days=30), "persistent"),
        red_flag_screen(CLOCK - timedelta(days=1)),
        extension_program(CLOCK - timedelta(days=days), baseline, current, location),
    ]


def test_R8_criterion_B_starts_level_1() -> None:
    """R8 / criterion B: "significantly improved with restoring lumbar lordosis but after two or
    three weeks still experience a small amount of pain at the centre of your back"."""
    d = decide_apply(_criterion_b(14, 6, 2))
    assert (d.code, d.features["criterion-b"], d.features["drop-points"]) == (START, True, 4)


@pytest.mark.parametrize(
    ("days", "baseline", "current", "location", "code"),
    [
        (13, 6, 2, "central", NOT_YET_ELIGIBLE),  # extension days below 14
        (15, 6, 2, "central", START),
        (14, 5, 3, "central", START),  # exactly 2 points
        (14, 4, 3, "central", NOT_YET_ELIGIBLE),  # 1 point
        (14, 10, 3, "central", START),  # residual 3
        (14, 10, 4, "central", NOT_YET_ELIGIBLE),  # residual 4
        (14, 6, 2, "one-side", NOT_YET_ELIGIBLE),  # not central
    ],
)
def test_R8_boundary_criterion_B(
    days: int, baseline: int, current: int, location: str, code: str
) -> None:
    assert decide_apply(_criterion_b(days, baseline, current, location)).code == code


@pytest.mark.parametrize(("current", "code"), [(7, START), (8, NOT_YET_ELIGIBLE)])
def test_R8_boundary_criterion_B_drop_percent(current: int, code: str) -> None:
    """30 % of baseline 10: 7 is exactly 30 % below, 8 only 20 % (residual limit lifted)."""
    pd = plan_definition(criterion_b_max_residual_pain=10)
    assert decide_apply(_criterion_b(14, 10, current), pd=pd).code == code


# R9 -------------------------------------------------------------------------------------------
def test_R9_wearing_off_or_stable_central_continues() -> None:
    """R9: "An initial pain that wears off gradually with repetition of the exercise is
    acceptable"; "some central, midline, lower back pain ... is not uncommon" -> continue."""
    wearing = decide_session([4, 3, 2, 1, 1], location_start="one-side", location_end="one-side")
    assert (wearing.code, wearing.rule_ids, wearing.features["pattern"]) == (
        CONTINUE,
        ("R9",),
        "wearing-off",
    )
    stable = decide_session([2, 2, 2, 2, 2])
    assert (stable.code, stable.rule_ids, stable.features["pattern"]) == (
        CONTINUE,
        ("R9",),
        "stable",
    )


@pytest.mark.parametrize(("reps", "rules"), [([4, 3, 4, 2, 1], ("R9",)), ([4, 2, 4, 2, 1], ())])
def test_R9_boundary_wearing_off_step_up(reps: list[int], rules: tuple[str, ...]) -> None:
    d = decide_session(reps, location_start="one-side", location_end="one-side")
    assert d.rule_ids == rules
    assert d.code == CONTINUE
    assert d.review_requested is (rules == ())  # no row matched: a clinician looks at it


# R10 ------------------------------------------------------------------------------------------
def _tolerated_days(n: int, last: int = 0) -> tuple[Timeline, object]:
    t = Timeline(observations=eligible_state(at(0)))
    d = None
    for day in range(n):
        if day < n - 1:  # two sessions a day; every session of a day must be tolerated
            t.submit([2, 1, 1, 0, 0], at(day, 8))
        d, _ = t.submit([2, 1, 1, 0, last], at(day, 18))
    return t, d


def test_R10_seven_tolerated_days_progress_to_level_2() -> None:
    """R10: "[7] consecutive days of tolerated sessions (R9 only, last repetition <= [2]) at the
    current level" -> progress to the next level."""
    t, d = _tolerated_days(7)
    assert (d.code, d.rule_ids, d.level_current, d.level_new) == (PROGRESS, ("R9", "R10"), 1, 2)
    statuses = [(a.get("id"), a["detail"]["status"]) for a in t.care_plan["activity"]]
    assert ("level-2-flexion", "in-progress") in statuses
    assert statuses[0][1] == "completed"
    nxt, _ = t.submit(TOLERATED, at(7, 9))
    assert (nxt.code, nxt.level_current, nxt.features["consecutive-tolerated-days"]) == (
        CONTINUE,
        2,
        1,
    )


def test_R10_boundary_days() -> None:
    assert _tolerated_days(6)[1].code == CONTINUE


@pytest.mark.parametrize(("last", "code"), [(2, PROGRESS), (3, CONTINUE)])
def test_R10_boundary_last_repetition(last: int, code: str) -> None:
    assert _tolerated_days(7, last=last)[1].code == code


def test_R10_a_gap_day_restarts_the_run() -> None:
    t = Timeline(observations=eligible_state(at(0)))
    for day in (0, 1, 2, 4, 5, 6, 7, 8):
        d, _ = t.submit(TOLERATED, at(day, 9))
    assert (d.code, d.features["consecutive-tolerated-days"]) == (CONTINUE, 5)


# R11 ------------------------------------------------------------------------------------------
def test_R11_retry_window_before_and_after() -> None:
    """R11: "try it in another week or two": a session before the window opens gets the same hold
    and is not a retry; once open, a tolerated session resumes at level 1."""
    t = Timeline(observations=eligible_state(at(0)))
    hold, out = t.submit([1, 2, 3, 4, 5], at(0, 10))
    assert out.task is not None
    early, early_out = t.submit(TOLERATED, at(6, 10))
    assert (early.code, early.rule_ids) == (HOLD_BACK, ("R11",))
    assert (early.retry_start, early.retry_end) == (hold.retry_start, hold.retry_end)
    assert early_out.task is None and not early.hold_is_new
    retry, _ = t.submit(TOLERATED, at(7, 10))
    assert (retry.code, retry.rule_ids, retry.level_new) == (CONTINUE, ("R9", "R11"), 1)


def test_R11_evaluate_once_the_window_opens() -> None:
    t = Timeline(observations=eligible_state(at(0)))
    t.submit([1, 2, 3, 4, 5], at(0, 10))
    assert t.evaluate(at(6, 23)).__getitem__(0).code == HOLD_BACK
    d, _ = t.evaluate(at(7, 0, 1))
    assert (d.code, d.rule_ids, d.level_new) == (START, ("R11",), 1)


# Warnings -------------------------------------------------------------------------------------
def _warnings(**kwargs: object) -> tuple[str, ...]:
    reps = kwargs.pop("reps", TOLERATED)
    return tuple(w.id for w in decide_session(reps, **kwargs).warnings)  # type: ignore[arg-type]


def test_W1_extension_not_recorded() -> None:
    """W1 (SRC): "must always be followed immediately by a Cobra (Extension in Lying)"."""
    assert _warnings(extension_followed=False) == ("W1",)
    assert _warnings(extension_followed=None) == ("W1",)
    assert _warnings(extension_followed=True) == ()


@pytest.mark.parametrize(("count", "warned"), [(6, False), (7, True)])
def test_W2_more_repetitions_than_the_level_allows(count: int, warned: bool) -> None:
    """W2 (SRC): "Do only 5 - 6 repetitions per session"."""
    reps = [3, 2, 2, 1, 1, 1, 1][:count]
    assert ("W2" in _warnings(reps=reps)) is warned


@pytest.mark.parametrize(("sessions", "warned"), [(4, False), (5, True)])
def test_W3_more_than_four_sessions_a_day(sessions: int, warned: bool) -> None:
    """W3 (SRC): "repeat the sessions three or four times per day"."""
    t = Timeline(observations=eligible_state(at(0)))
    for n in range(sessions):
        d, _ = t.submit(TOLERATED, at(1, 8 + 2 * n))
    assert d.features["sessions-that-day"] == sessions
    assert ("W3" in [w.id for w in d.warnings]) is warned
    assert d.code == CONTINUE  # warnings never decide


def test_W4_technique_faults() -> None:
    """W4 (SRC): "do not raise your head ... do not straighten your legs as you lower them"."""
    assert _warnings(head_raised=True) == ("W4",)
    assert _warnings(legs_straightened=True) == ("W4",)
    assert _warnings(head_raised=False, legs_straightened=None) == ()
