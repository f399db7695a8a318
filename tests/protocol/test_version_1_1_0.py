"""Protocol version 1.1.0: one test per change C1-C11 of the decision table, built from its case,
with boundary tests (just below, at, just above) for each parameter 1.1.0 adds. Each change is
also decided under 1.0.0, which must keep deciding as before (C3, the defect fix, excepted)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from service.protocol.decide import Decision
from service.protocol.definitions import shipped_definition
from service.protocol.history import (
    CONTINUE,
    HOLD_BACK,
    NOT_YET_ELIGIBLE,
    PROGRESS,
    START,
    STOP_AND_REFER,
)
from service.protocol.parameters import (
    LATER_PARAMETERS,
    PARAMETER_NAMES,
    read_params,
)
from service.protocol.plan_start import plan_start
from service.protocol.rules import R5
from service.protocol.session_checks import check_session
from service.protocol.session_features import RISING, STABLE, pattern_of
from service.protocol.texts import DISCLAIMER, patient_text
from tests.protocol.builders import (
    V11_PARAMETERS,
    Timeline,
    at,
    care_plan,
    daily_pain,
    eligible_state,
    episode_phase,
    extension_program,
    pain_days,
    plan_definition,
    plan_definition_v11,
    red_flag_screen,
    session,
)
from tests.protocol.helpers import CLOCK, decide_apply, decide_session

V10 = plan_definition()
V11 = plan_definition_v11()
TOLERATED = [2, 1, 1, 0, 0]
RISING_REPS = [1, 2, 3, 4, 5]


def _both(reps: list[int], **kwargs: Any) -> tuple[Decision, Decision]:
    return decide_session(reps, pd=V10, **kwargs), decide_session(reps, pd=V11, **kwargs)


# The version itself ------------------------------------------------------------------------------
def test_shipped_1_1_0_has_every_parameter_and_1_0_0_reads_as_before() -> None:
    new = read_params(shipped_definition("PlanDefinition", "flexion-in-lying-protocol-1-1-0"))
    old = read_params(shipped_definition("PlanDefinition", "flexion-in-lying-protocol"))
    assert (new.plan_url, new.plan_version, old.plan_version) == (old.plan_url, "1.1.0", "1.0.0")
    for name, (value, reproducing, _) in V11_PARAMETERS.items():
        field = name.replace("-", "_")
        assert getattr(new, field) == value, name
        # 1.0.0 does not carry the parameter: it reads as the value that reproduces 1.0.0
        assert getattr(old, field) == reproducing == LATER_PARAMETERS[name], name
    for name in PARAMETER_NAMES:  # 1.1.0 keeps every 1.0.0 number
        assert getattr(new, name.replace("-", "_")) == getattr(old, name.replace("-", "_"))
    assert {"R9b", "R12", "W5"} <= new.named_rules
    assert not {"R9b", "R12", "W5"} & old.named_rules


def test_a_code_parameter_with_another_value_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="rising-rule"):
        read_params(plan_definition_v11(rising_rule="mostly-up"))


def test_a_clinic_version_with_every_1_0_0_value_decides_as_1_0_0() -> None:
    """The new parameters at their 1.0.0 values reproduce 1.0.0 (here: C1, C4's case, C6)."""
    reproducing = {k.replace("-", "_"): v for k, (_, v, _) in V11_PARAMETERS.items()}
    clinic = plan_definition_v11("1.1.0-clinic", **reproducing)
    for reps, where in (([2, 4, 2, 4, 6], "central"), ([3, 3, 3], "central")):
        old = decide_session(reps, pd=V10, location_start=where, location_end=where)
        same = decide_session(reps, pd=clinic, location_start=where, location_end=where)
        assert (same.code, same.rule_ids) == (old.code, old.rule_ids)


# C1 ----------------------------------------------------------------------------------------------
def test_C1_a_dip_does_not_hide_a_climb() -> None:
    """C1: [2,4,2,4,6] (pain tripled) holds back under 1.1.0, continues under 1.0.0."""
    old, new = _both([2, 4, 2, 4, 6])
    assert (old.code, old.rule_ids) == (CONTINUE, ("R9",))
    assert (new.code, new.rule_ids[0]) == (HOLD_BACK, "R4")
    params = read_params(V11)
    assert pattern_of((3, 3, 3, 3, 5), params) == RISING
    assert pattern_of((2, 3, 3), params) == STABLE


@pytest.mark.parametrize(
    ("reps", "majority_up", "no_large_dip"),
    [
        ([2, 4, 3, 2, 4], False, True),  # 2 steps up, 2 down: below the majority
        ([2, 4, 2, 4], True, False),  # 2 up, 1 down (a dip of 2): just a majority
        ([2, 3, 4, 3, 5], True, True),  # 3 up, 1 down
    ],
)
def test_C1_boundary_rising_rule(reps: list[int], majority_up: bool, no_large_dip: bool) -> None:
    assert (pattern_of(tuple(reps), read_params(V11)) == RISING) is majority_up
    assert (pattern_of(tuple(reps), read_params(V10)) == RISING) is no_large_dip


# C2 ----------------------------------------------------------------------------------------------
def _pain_free_before_today(pain_free: int, today: int | None = None) -> list[dict[str, Any]]:
    """Pain-free days first, then days with pain, over the 14 days before the clock."""
    state = [
        episode_phase(CLOCK - timedelta(days=30), "recovering"),
        red_flag_screen(CLOCK - timedelta(days=1)),
        *pain_days(CLOCK, [0] * pain_free + [1] * (14 - pain_free)),
    ]
    if today is not None:
        state.append(daily_pain(CLOCK - timedelta(minutes=5), today))
    return state


def test_C2_criterion_A_counts_the_fourteen_completed_days() -> None:
    """C2: 10 pain-free days of the 14 before today, no score today yet: 1.0.0 counted today
    (9 of its window) and said not yet; 1.1.0 starts."""
    state = _pain_free_before_today(10)
    assert decide_apply(state, pd=V10).code == NOT_YET_ELIGIBLE
    new = decide_apply(state, pd=V11)
    assert (new.code, new.features["criterion-a-pain-free-days"]) == (START, 10)


@pytest.mark.parametrize(("pain_free", "code"), [(9, NOT_YET_ELIGIBLE), (10, START), (11, START)])
def test_C2_boundary_lookback_anchor_completed_days(pain_free: int, code: str) -> None:
    assert decide_apply(_pain_free_before_today(pain_free), pd=V11).code == code


def test_C2_today_counts_once_it_has_a_score() -> None:
    assert decide_apply(_pain_free_before_today(9, today=0), pd=V11).code == START
    assert decide_apply(_pain_free_before_today(9, today=2), pd=V11).code == NOT_YET_ELIGIBLE


def test_C2_extension_days_use_the_same_anchor() -> None:
    """13 completed days on extension exercises: today counts once it has a daily score."""
    state = [
        episode_phase(CLOCK - timedelta(days=30), "persistent"),
        red_flag_screen(CLOCK - timedelta(days=1)),
        extension_program(CLOCK - timedelta(days=13), 6, 2, "central"),
    ]
    assert decide_apply(state, pd=V11).features["extension-days"] == 13
    scored = [*state, daily_pain(CLOCK - timedelta(minutes=5), 2)]
    assert decide_apply(scored, pd=V11).features["extension-days"] == 14
    assert decide_apply(scored, pd=V10).features["extension-days"] == 13


# C3 ----------------------------------------------------------------------------------------------
def _criterion_b(current: int, location: str) -> list[dict[str, Any]]:
    return [
        episode_phase(CLOCK - timedelta(days=30), "persistent"),
        red_flag_screen(CLOCK - timedelta(days=1)),
        extension_program(CLOCK - timedelta(days=14), 6, current, location),
    ]


@pytest.mark.parametrize("pd", [V10, V11], ids=["1.0.0", "1.1.0"])
def test_C3_no_remaining_pain_is_not_criterion_B_in_any_version(pd: dict[str, Any]) -> None:
    """C3: a residual of 0 at any location met B (the defect); "still experience a small amount
    of pain at the centre of your back" needs some central pain, in every version."""
    for location in ("one-side", "central"):
        d = decide_apply(_criterion_b(0, location), pd=pd)
        assert (d.code, d.features["criterion-b"]) == (NOT_YET_ELIGIBLE, False)
    assert decide_apply(_criterion_b(1, "central"), pd=pd).code == START


@pytest.mark.parametrize(
    ("current", "code"), [(0, NOT_YET_ELIGIBLE), (1, START), (3, START), (4, NOT_YET_ELIGIBLE)]
)
def test_C3_boundary_residual_between_1_and_3(current: int, code: str) -> None:
    assert decide_apply(_criterion_b(current, "central"), pd=V11).code == code


# C4 ----------------------------------------------------------------------------------------------
def _days_of_sessions(pd: dict[str, Any], days: int, per_day: int) -> list[Decision]:
    t = Timeline(pd, observations=eligible_state(at(0)))
    return [
        t.submit(TOLERATED, at(day, 8 + 3 * k))[0] for day in range(days) for k in range(per_day)
    ]


def test_C4_seven_days_of_one_session_do_not_progress() -> None:
    """C4: seven days of one tolerated session continue under 1.1.0, progress under 1.0.0."""
    assert _days_of_sessions(V10, 7, 1)[-1].code == PROGRESS
    assert _days_of_sessions(V11, 7, 1)[-1].code == CONTINUE


def test_C4_seven_days_of_three_sessions_progress_on_the_third() -> None:
    decisions = _days_of_sessions(V11, 7, 3)
    assert [d.code for d in decisions[-3:]] == [CONTINUE, CONTINUE, PROGRESS]
    assert decisions[-2].features["consecutive-tolerated-days"] == 6


@pytest.mark.parametrize(("need", "code"), [(2, PROGRESS), (3, PROGRESS), (4, CONTINUE)])
def test_C4_boundary_progress_min_sessions_per_day(need: int, code: str) -> None:
    """Three sessions a day against a minimum of 2, 3 and 4."""
    pd = plan_definition_v11(progress_min_sessions_per_day=need)
    seventh_day = [d.code for d in _days_of_sessions(pd, 7, 3)[-3:]]
    assert (PROGRESS in seventh_day) is (code == PROGRESS)


def test_C4_a_day_with_one_session_not_tolerated_does_not_count() -> None:
    t = Timeline(V11, observations=eligible_state(at(0)))
    for day in range(7):
        for k in range(3):
            reps = [3, 3, 3, 3, 3] if (day, k) == (3, 1) else TOLERATED
            d, _ = t.submit(reps, at(day, 8 + 3 * k))
    assert d.code == CONTINUE
    assert d.features["consecutive-tolerated-days"] == 3


# C5 ----------------------------------------------------------------------------------------------
def _stopped(pd: dict[str, Any]) -> Timeline:
    t = Timeline(pd, observations=eligible_state(at(0)))
    d, _ = t.submit(TOLERATED, at(0, 9), location_start="central", location_end="buttock-thigh")
    assert (d.code, d.rule_ids) == (STOP_AND_REFER, ("R2",))
    return t


def test_C5_the_stop_stands_for_a_later_session() -> None:
    """C5: a session on a plan stopped by R2 is answered stop-and-refer (R12), with no new
    review request, Task or patient message."""
    t = _stopped(V11)
    d, out = t.submit(TOLERATED, at(1, 9))
    assert (d.code, d.rule_ids, d.review_requested, d.urgent) == (
        STOP_AND_REFER,
        ("R12",),
        False,
        False,
    )
    assert out.service_request is None and out.task is None and out.communication_request is None
    assert out.detected_issues == ()
    assert any(DISCLAIMER in n["text"] for n in out.guidance_response["note"])
    # 1.0.0 (refuse): the use case answers 422 before deciding; decided, it refers again.
    old, _ = _stopped(V10).submit(TOLERATED, at(1, 9))
    assert (old.code, old.rule_ids, old.review_requested) == (STOP_AND_REFER, ("R2",), True)


def test_C5_a_new_finding_still_adds_its_detected_issue() -> None:
    t = _stopped(V11)
    d, out = t.submit(TOLERATED, at(1, 9), location_start="one-side", location_end="below-knee")
    assert (d.code, d.rule_ids, d.review_requested) == (STOP_AND_REFER, ("R12", "R2"), False)
    assert [i["code"]["coding"][0]["code"] for i in out.detected_issues] == ["R2"]
    assert out.service_request is None


def test_C5_stays_stopped_and_a_clinician_resumes_it() -> None:
    t = _stopped(V11)
    t.submit(TOLERATED, at(1, 9))
    again, _ = t.submit(TOLERATED, at(2, 9))
    assert again.rule_ids == ("R12",)
    for activity in t.care_plan["activity"]:
        activity["detail"]["status"] = "in-progress"  # the clinician resumes the plan
    resumed, _ = t.submit(TOLERATED, at(3, 9))
    assert (resumed.code, resumed.rule_ids) == (CONTINUE, ("R9",))


# C6 ----------------------------------------------------------------------------------------------
def test_C6_stable_pain_away_from_the_spine_is_R9b() -> None:
    """C6: stable pain at one side that did not peripheralize: continue with review, R9b."""
    old, new = _both([3, 3, 3, 3, 3], location_start="one-side", location_end="one-side")
    assert (new.code, new.rule_ids, new.review_requested) == (CONTINUE, ("R9b",), True)
    # 1.0.0 made the same decision without naming a rule
    assert (old.code, old.rule_ids, old.review_requested) == (CONTINUE, (), True)
    text = patient_text(new, read_params(V11))
    assert "away from the centre" in text and text.endswith(DISCLAIMER)


@pytest.mark.parametrize(
    ("start", "end", "rules"),
    [
        ("buttock-thigh", "buttock-thigh", ("R9b",)),
        ("buttock-thigh", "one-side", ("R9b",)),  # centralizing, still away from the spine
        ("one-side", "buttock-thigh", ("R2",)),  # peripheralized: R2 decides
        ("central", "central", ("R9",)),
        (None, "one-side", ()),  # start not reported: no rule names it
    ],
)
def test_C6_boundary_location(start: str | None, end: str, rules: tuple[str, ...]) -> None:
    d = decide_session([3, 3, 3, 3, 3], pd=V11, location_start=start, location_end=end)
    assert d.rule_ids == rules


# C7 ----------------------------------------------------------------------------------------------
def _without_cobra(pd: dict[str, Any], sessions: int) -> list[Decision]:
    t = Timeline(pd, observations=eligible_state(at(0)))
    return [t.submit(TOLERATED, at(0, 8 + k), extension_followed=False)[0] for k in range(sessions)]


def test_C7_three_sessions_without_the_cobra_add_a_review() -> None:
    """C7: W1 in 3 consecutive sessions adds a review request; the decision does not change."""
    new = _without_cobra(V11, 4)
    assert [d.review_requested for d in new] == [False, False, True, False]
    assert all((d.code, d.rule_ids) == (CONTINUE, ("R9",)) for d in new)
    assert all("W1" in [w.id for w in d.warnings] for d in new)
    text = patient_text(new[2], read_params(V11))
    assert "Cobra" in text and "clinician" in text and text.endswith(DISCLAIMER)
    assert not any(d.review_requested for d in _without_cobra(V10, 4))


@pytest.mark.parametrize(
    ("after", "reviewed"),
    [
        (2, [False, True, False]),
        (3, [False, False, True]),
        (4, [False, False, False]),
        (0, [False, False, False]),
    ],
)
def test_C7_boundary_cobra_missed_review_after(after: int, reviewed: list[bool]) -> None:
    pd = plan_definition_v11(cobra_missed_review_after=after)
    assert [d.review_requested for d in _without_cobra(pd, 3)] == reviewed


def test_C7_a_session_with_the_cobra_starts_the_count_again() -> None:
    t = Timeline(V11, observations=eligible_state(at(0)))
    flags = [False, False, True, False, False, False]
    seen = [t.submit(TOLERATED, at(0, 8 + k), extension_followed=f)[0] for k, f in enumerate(flags)]
    assert [d.review_requested for d in seen] == [False, False, False, False, False, True]


# C8 ----------------------------------------------------------------------------------------------
def _not_started(pd: dict[str, Any], observations: list[dict[str, Any]]) -> Timeline:
    t = Timeline(pd, observations=observations)
    t.care_plan = care_plan("not-started")
    return t


def _not_eligible() -> list[dict[str, Any]]:
    return [
        episode_phase(at(0) - timedelta(days=20), "recovering"),
        red_flag_screen(at(0)),
        *pain_days(at(0), [3] * 14),
    ]


def test_C8_a_session_before_eligibility_is_not_yet_eligible() -> None:
    """C8: told "not yet" and exercised anyway: 1.1.0 answers not-yet-eligible with a review
    request, and the session counts for nothing; 1.0.0 answered continue."""
    t = _not_started(V11, _not_eligible())
    d, out = t.submit(TOLERATED, at(0, 18))
    assert (d.code, d.rule_ids, d.review_requested) == (NOT_YET_ELIGIBLE, ("R7",), True)
    assert d.recheck_date == date(2025, 3, 10)
    assert out.service_request is not None and out.task is None
    assert t.care_plan["activity"][0]["detail"]["status"] == "not-started"
    text = patient_text(d, read_params(V11))
    assert "do not do the exercise" in text and text.endswith(DISCLAIMER)
    again, _ = t.submit(TOLERATED, at(1, 18))
    assert again.code == NOT_YET_ELIGIBLE  # the first session did not start the plan
    old = _not_started(V10, _not_eligible()).submit(TOLERATED, at(0, 18))[0]
    assert (old.code, old.rule_ids) == (CONTINUE, ("R9",))


def test_C8_eligible_at_the_session_clock_starts_and_decides_as_usual() -> None:
    t = _not_started(V11, eligible_state(at(0)))
    d, _ = t.submit(TOLERATED, at(0, 18))
    assert (d.code, d.rule_ids) == (CONTINUE, ("R9",))
    assert t.care_plan["activity"][0]["detail"]["status"] == "in-progress"


@pytest.mark.parametrize(
    ("pd", "supervised", "code"),
    [
        (plan_definition_v11(session_before_start="decide"), None, CONTINUE),
        (V11, True, CONTINUE),  # supervised: decided as usual
        (V11, None, NOT_YET_ELIGIBLE),
    ],
)
def test_C8_boundary_session_before_start(
    pd: dict[str, Any], supervised: bool | None, code: str
) -> None:
    t = _not_started(pd, _not_eligible())
    assert t.submit(TOLERATED, at(0, 18), supervised=supervised)[0].code == code


# C9 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("retry_day", "w5"), [(13, False), (14, False), (15, True)])
def test_C9_a_retry_after_the_window_closed_warns_W5(retry_day: int, w5: bool) -> None:
    """C9: a retry after the window [+7, +14] closed is decided by R11 like any retry, with W5."""
    for pd, named in ((V11, True), (V10, False)):
        t = Timeline(pd, observations=eligible_state(at(0)))
        hold, _ = t.submit(RISING_REPS, at(0, 10))
        assert hold.retry_end == date(2025, 3, 17)
        d, _ = t.submit(TOLERATED, at(retry_day, 10))
        assert (d.code, d.rule_ids) == (CONTINUE, ("R9", "R11"))
        assert ("W5" in [w.id for w in d.warnings]) is (w5 and named)
        if w5 and named:
            text = patient_text(d, read_params(pd))
            assert "inside the window" in text and text.endswith(DISCLAIMER)


# C10 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pd", [V10, V11], ids=["1.0.0", "1.1.0"])
@pytest.mark.parametrize(("second_day", "r6"), [(27, True), (28, True), (29, False)])
def test_C10_within_28_days_includes_day_28(pd: dict[str, Any], second_day: int, r6: bool) -> None:
    t = Timeline(pd, observations=eligible_state(at(0)))
    t.submit(RISING_REPS, at(0, 10))
    d, _ = t.submit(RISING_REPS, at(second_day, 10))
    assert ("R6" in d.rule_ids) is r6


def test_C10_a_session_before_the_plan_started_is_refused() -> None:
    """C10: a session timed before the CarePlan's period.start is refused like one in the
    future (every version: the check does not read the PlanDefinition)."""
    plan = {**care_plan(), "period": {"start": "2025-03-10T00:00:00Z"}}
    start = plan_start(plan, None)
    early = session(TOLERATED, datetime.fromisoformat("1900-01-01T09:00:00+00:00"))
    problems = check_session(early, plan, at(30), start)
    assert problems and all("before CarePlan/cp1 started" in p.message for p in problems)
    assert check_session(session(TOLERATED, at(10)), plan, at(30), start) == []


# C11 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pd", [V10, V11], ids=["1.0.0", "1.1.0"])
def test_C11_R5_over_R9_holds_back_a_severe_pain_that_wears_off(pd: dict[str, Any]) -> None:
    """C11: any repetition >= 7 holds back with review even when the pain wears off."""
    d = decide_session([8, 6, 4, 2, 1], pd=pd)
    assert (d.code, d.rule_ids, d.review_requested) == (HOLD_BACK, ("R5",), True)
    assert "R5 over R9" in R5.source


# Patient texts -----------------------------------------------------------------------------------
def test_every_1_1_0_text_ends_with_the_consult_sentence() -> None:
    params = read_params(V11)
    stopped, _ = _stopped(V11).submit(TOLERATED, at(1, 9))
    r9b = decide_session([3, 3, 3], pd=V11, location_start="one-side", location_end="one-side")
    c8 = _not_started(V11, _not_eligible()).submit(TOLERATED, at(0, 18))[0]
    for d in (stopped, r9b, c8, _without_cobra(V11, 3)[-1]):
        assert patient_text(d, params).endswith(DISCLAIMER)
    assert decide_session(TOLERATED, pd=V11, end=CLOCK).plan_canonical.endswith("|1.1.0")
