"""The plan state a decision carries forward gives the same decisions as folding the history.

A decision reads the state from the latest GuidanceResponse instead of folding a month of
them (history.py). These tests walk random patients through weeks of sessions and decide each
step twice: from the carried state, and from the look-back window of decisions with the
carried state stripped (how decisions were made before, and how decisions written before
the change are still read). Both must agree on everything but the carried state itself.

Two differences are by design, in counts the decision reports, never in the decision:
- "earlier-hold-backs": the old reading counted the start days of the hold-backs whose
  decisions fell in the window, and a hold-back repeated inside the window (R11) still names the
  day its hold began, which can lie before the window. The carried state counts hold-backs that
  began within the look-back. That count is checked against the stored decisions directly.
- With no decision in the window, the old reading folded the plan's latest decision whatever its
  age, so a tolerated day 40 days ago could still count in "consecutive-tolerated-days"; the
  carried state forgets it, as the window reading does whenever the window holds any decision.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from service.protocol.decide import Decision, decide
from service.protocol.history import (
    CONTINUE,
    HOLD_BACK,
    PROGRESS,
    S_LEVEL,
    S_TOLERATED_DAYS,
    parse_decision,
    state_parameters,
)
from service.protocol.inputs import PatientRecord, Session
from service.protocol.parameters import lookback_days
from tests.protocol.builders import Timeline, at, eligible_state, pain_days, session_resources

PATTERNS = {
    "wearing-off": [3, 2, 1, 0, 0],
    "pain-free": [0, 0, 0, 0, 0],
    "stable": [2, 2, 2, 2, 2],
    "rising": [1, 2, 3, 4, 5],
    "late-pain": [1, 1, 2, 3, 3],
}
steps = st.lists(
    st.tuples(
        st.sampled_from(sorted(PATTERNS)),
        st.sampled_from([3, 6, 6, 6, 12, 24, 24 * 3, 24 * 8, 24 * 12, 24 * 40]),  # hours later
        st.booleans(),  # an $evaluate instead of a session
    ),
    min_size=1,
    max_size=45,
)


def _strip_state(response: dict) -> dict:
    """The GuidanceResponse as decisions were written before they carried their state."""
    features = response["contained"][0]
    kept = [p for p in features["parameter"] if not p["name"].startswith("state-")]
    return {**response, "contained": [{**features, "parameter": kept}]}


def _window_decisions(decisions: list[dict], clock: datetime, days: int) -> list[dict]:
    """What the store returned before: the window's decisions, else the latest one."""
    stripped = [_strip_state(d) for d in decisions]
    parsed = [(parse_decision(d, clock.tzinfo), d) for d in stripped]
    dated = [(p.at, d) for p, d in parsed if p is not None and p.at <= clock]
    recent = [d for when, d in dated if when >= clock - timedelta(days=days)]
    if recent:
        return recent
    return [max(dated, key=lambda pair: pair[0])[1]] if dated else []


def _comparable(decision: Decision) -> dict:
    features = {k: v for k, v in decision.features.items() if not k.startswith("state-")}
    return {
        "code": decision.code,
        "levels": (decision.level_current, decision.level_new),
        "fired": decision.rule_ids,
        "warnings": tuple(w.id for w in decision.warnings),
        "retry": (decision.retry_start, decision.retry_end, decision.hold_is_new),
        "features": features,
    }


def _differences(new: dict, old: dict) -> dict:
    """What differs, feature by feature (an empty dict when the two readings agree)."""
    keys = {*new["features"], *old["features"]}
    diff = {k: (new["features"].get(k), old["features"].get(k)) for k in sorted(keys)}
    diff = {k: pair for k, pair in diff.items() if pair[0] != pair[1]}
    return diff | {k: (new[k], old[k]) for k in new if k != "features" and new[k] != old[k]}


def _holds_begun_since(decisions: list[dict], first_day: date) -> int:
    """Distinct days a hold-back began, on or after `first_day`, read off the decisions."""
    begun = set()
    for response in decisions:
        past = parse_decision(response, None)
        if past is not None and past.code == HOLD_BACK and past.hold_started is not None:
            begun.add(past.hold_started)
    return len({d for d in begun if d >= first_day})


def _walk(plan: list[tuple[str, int, bool]]) -> list[tuple[dict, dict]]:
    start = at(0)
    # Daily pain scores for the whole walk keep criterion A true, so the plan can progress.
    timeline = Timeline(
        observations=[*eligible_state(start), *pain_days(start + timedelta(200), [0] * 214)]
    )
    days = lookback_days(timeline.params)
    clock, pairs = start, []
    for n, (pattern, hours, evaluate) in enumerate(plan):
        clock += timedelta(hours=hours)
        window = _window_decisions(timeline.decisions, clock, days)
        legacy = PatientRecord(
            patient=timeline.record().patient,
            care_plan=timeline.care_plan,
            observations=tuple(timeline.observations),
            earlier_decisions=tuple(window),
        )
        empty_window = (
            len(window) == 1
            and window[0] is not None
            and not any(
                parse_decision(d, None).at >= clock - timedelta(days=days)  # type: ignore[union-attr]
                for d in window
            )
        )
        if evaluate:
            old = decide(timeline.plan, legacy, None, clock)
            new, _ = timeline.evaluate(clock)
        else:
            panel, members = session_resources(PATTERNS[pattern], clock, sid=f"walk-{n}")
            old = decide(timeline.plan, legacy, Session.from_observations(panel, members), clock)
            new, _ = timeline.submit(PATTERNS[pattern], clock, sid=f"walk-{n}")
        new_view, old_view = _comparable(new), _comparable(old)
        first_day = (clock - timedelta(days=days)).date()
        holds = new_view["features"].pop("earlier-hold-backs")
        assert holds == _holds_begun_since(timeline.decisions[:-1], first_day)
        old_view["features"].pop("earlier-hold-backs")
        if empty_window:
            new_view["features"].pop("consecutive-tolerated-days", None)
            old_view["features"].pop("consecutive-tolerated-days", None)
        pairs.append((new_view, old_view))
    return pairs


@settings(max_examples=60, deadline=None)
@given(steps)
def test_carried_state_decides_like_the_folded_history(plan: list[tuple[str, int, bool]]) -> None:
    for step, (new, old) in enumerate(_walk(plan)):
        assert _differences(new, old) == {}, f"step {step} of {plan}"


def test_a_long_walk_reaches_every_kind_of_state() -> None:
    """A fixed walk through start, progress, hold-back and retry: the two readings agree, and
    the walk really exercises the carried run of tolerated days and the hold-backs."""
    plan = [("wearing-off", 12, False)] * 16 + [("rising", 6, False), ("stable", 24 * 8, False)]
    plan += [("pain-free", 24, False)] * 9 + [("rising", 24, False), ("rising", 6, False)]
    pairs = _walk(plan)
    codes = [new["code"] for new, _ in pairs]
    assert [_differences(new, old) for new, old in pairs] == [{}] * len(pairs)
    assert PROGRESS in codes and HOLD_BACK in codes and CONTINUE in codes


def test_state_parameters_round_trip() -> None:
    timeline = Timeline(observations=eligible_state(at(0)))
    for n in range(12):
        timeline.submit(PATTERNS["wearing-off"], at(0) + timedelta(hours=6 * (n + 1)), sid=f"s{n}")
    latest = timeline.decisions[-1]
    past = parse_decision(latest, None)
    assert past is not None and past.state is not None
    names = {p["name"] for p in latest["contained"][0]["parameter"]}
    assert {S_LEVEL, S_TOLERATED_DAYS} <= names
    carried = state_parameters(past.state, past.previous)
    written = {k: v for k, v in carried.items() if v is not None}
    stored = {p["name"] for p in latest["contained"][0]["parameter"] if p["name"] in written}
    assert stored == set(written)
    assert len(past.state.tolerated_days) >= 2  # three days of tolerated sessions so far


def test_a_session_that_arrives_late_is_folded_in_time_order() -> None:
    """Days 1-3, 5, 6, then day 4 arrives late: day 7 is the seventh tolerated day in a row.

    The decision of day 6 carried a state without day 4; the decisions no longer form one
    chain (day 5 was carried from day 3), so the core folds them in time order instead.
    """
    timeline = Timeline(observations=[*eligible_state(at(0)), *pain_days(at(30), [0] * 44)])
    for n in (1, 2, 3, 5, 6, 4):
        timeline.submit(PATTERNS["wearing-off"], at(n), sid=f"day-{n}")
    late = parse_decision(timeline.decisions[-1], None)
    assert (
        late is not None and late.previous == "https://fhir.flexion-careplan.org/sid/session|day-3"
    )
    decision, _ = timeline.submit(PATTERNS["wearing-off"], at(7), sid="day-7")
    assert decision.code == PROGRESS
    assert decision.features["consecutive-tolerated-days"] == 7
