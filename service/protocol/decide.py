"""decide(): one decision from the PlanDefinition, the patient's record and an optional session.

Pure and deterministic: the clock is passed in (the session's own effectivePeriod end), never
read from the system. `session=None` is `$apply` / `$evaluate` (R0, R1, R3, R7, R8, R11 paths).

Order: a standing stop answered (R12, where the version stores such sessions) -> R0-R2 (data
and safety) -> a standing hold before its window (R11) -> the first session on a plan not yet
started, where the version checks eligibility first (C8) -> R3, R4, R5, R7, R8, R9, R9b; R5 also
fires beside R4, R6 adds a review to R4/R5, R10 upgrades R9 to progress, R11 resets a tolerated
retry to level 1. When no row matches (a stable session with pain away from the spine, in a
version that does not name R9b, or an unreported location), the plan continues and a clinician
review is requested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from service.protocol import rules as r
from service.protocol.activities import activity_level
from service.protocol.fhirdata import Json, effective_end, local_date, ref_key
from service.protocol.history import (
    CONTINUE,
    DATA_REQUIRED,
    EVALUATION_KEY_PREFIX,
    HOLD_BACK,
    NOT_YET_ELIGIBLE,
    PROGRESS,
    START,
    STOP_AND_REFER,
    PastDecision,
    PlanState,
    advance,
    earlier,
    since,
    state_before,
)
from service.protocol.inputs import PatientRecord, Session
from service.protocol.parameters import Params, lookback_days, read_params
from service.protocol.patient_features import patient_features
from service.protocol.requirements import data_requirements
from service.protocol.session_features import session_features
from service.protocol.summary import feature_values


@dataclass(frozen=True)
class FiredRule:
    id: str
    tag: str
    source: str


@dataclass(frozen=True)
class Decision:
    code: str
    level_current: int
    level_new: int
    fired: tuple[FiredRule, ...]
    warnings: tuple[FiredRule, ...]
    features: dict[str, Any]
    plan_canonical: str
    plan_id: str | None
    clock: datetime
    patient_ref: str
    care_plan_ref: str | None
    session_key: str
    input_refs: tuple[str, ...]
    retry_start: date | None = None
    retry_end: date | None = None
    hold_is_new: bool = False
    recheck_date: date | None = None
    review_requested: bool = False
    urgent: bool = False
    data_requirements: tuple[Json, ...] = field(default=())
    explanation: str = ""
    cobra_review: bool = False  # the review is W1's escalation (C7)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(f.id for f in self.fired)


def session_clock(session: Session) -> datetime:
    """The decision clock for a session: the end of its effectivePeriod."""
    end = effective_end(session.panel)
    if end is None:
        raise ValueError("the session panel has no effectivePeriod")
    return end


def _fired(rule: r.Rule) -> FiredRule:
    return FiredRule(rule.id, rule.tag, rule.source)


def _flexion_status(care_plan: Json | None, params: Params, level: int) -> str | None:
    """Status of the current level's flexion activity, when the plan is given."""
    for activity in (care_plan or {}).get("activity", []):
        if activity_level(activity, params.levels) == (level, "flexion"):
            return (activity.get("detail") or {}).get("status")
    return None


def _with_plan(state: PlanState, care_plan: Json | None, params: Params) -> PlanState:
    """A clinician resumes a stopped plan by setting the flexion activity back in the CarePlan."""
    if state.stopped and care_plan is not None:
        status = _flexion_status(care_plan, params, state.level)
        if status is not None and status != "stopped":
            return PlanState(**{**state.__dict__, "stopped": False})
    return state


@dataclass
class _Outcome:
    code: str
    fired: list[r.Rule]
    level_new: int
    review: bool = False
    urgent: bool = False
    note: str = ""


def _primary(ctx: r.Context) -> _Outcome:
    level = ctx.state.level
    if r.R12.fires(ctx):
        # The stop stands: no new review, Task or message; a new finding still gets its issue.
        findings = [x for x in (r.R1, r.R2) if x.fires(ctx)]
        return _Outcome(
            STOP_AND_REFER,
            [r.R12, *findings],
            level,
            note="the plan is stopped until a clinician resumes it; the session is kept for the "
            "open review request",
        )
    for rule in r.SAFETY:
        if rule.fires(ctx):
            return _Outcome(rule.decision or "", [rule], level, rule.id != "R0", rule.id == "R1")
    if ctx.state.stopped:
        kept = [x for x in r.ALL_RULES if x.id in ctx.state.stop_rules]
        return _Outcome(
            STOP_AND_REFER,
            kept,
            level,
            True,
            "R1" in ctx.state.stop_rules,
            "the plan is stopped until a clinician resumes it",
        )
    if r.SAME_HOLD(ctx):
        return _Outcome(HOLD_BACK, [r.R11], level, note="session before the retry window opens")
    if not r.R3.fires(ctx) and r.before_start_not_eligible(ctx):
        return _Outcome(
            NOT_YET_ELIGIBLE,
            [r.R7],
            level,
            True,
            note="a session on a plan whose patient is not yet eligible: stored, it counts for "
            "nothing",
        )
    for rule in r.CASE:
        if not rule.fires(ctx):
            continue
        if rule.decision == HOLD_BACK:
            return _hold(ctx, rule)
        if rule is r.R9:
            return _continue(ctx)
        return _Outcome(rule.decision or "", [rule], level, rule in (r.R3, r.R9B))
    return _fallback(ctx)


def _hold(ctx: r.Context, rule: r.Rule) -> _Outcome:
    fired = [rule] + ([r.R5] if rule is r.R4 and r.R5.fires(ctx) else [])
    if ctx.state.on_hold:
        fired.append(r.R11)
    review = r.R5 in fired
    if r.R6.fires(ctx):
        fired.append(r.R6)
        review = True
    return _Outcome(HOLD_BACK, fired, ctx.state.level, review)


def _continue(ctx: r.Context) -> _Outcome:
    first = ctx.params.levels[0].number
    if ctx.state.on_hold:  # window open: a tolerated retry resumes at level 1
        return _Outcome(CONTINUE, [r.R9, r.R11], first)
    if r.R10.fires(ctx):
        nxt = min(lv.number for lv in ctx.params.levels if lv.number > ctx.state.level)
        return _Outcome(PROGRESS, [r.R9, r.R10], nxt)
    return _Outcome(CONTINUE, [r.R9], ctx.state.level)


def _fallback(ctx: r.Context) -> _Outcome:
    if ctx.session is None and ctx.state.on_hold:  # $evaluate once the window has opened
        return _Outcome(START, [r.R11], ctx.params.levels[0].number)
    if ctx.session is None:
        return _Outcome(CONTINUE, [], ctx.state.level, note="no new session")
    return _Outcome(
        CONTINUE,
        [],
        ctx.state.level,
        True,
        note="no rule matched (stable pain away from the spine or location not reported)",
    )


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def decision_key(session: Session | None, at: datetime) -> str:
    """What a plan's decision is for: its session, or for an evaluation its clock. The ids of
    the decision's resources derive from it (outputs.resource_id)."""
    # In UTC: one instant is one evaluation, whatever offset the caller wrote it with.
    if session:
        return session.key
    return f"{EVALUATION_KEY_PREFIX}{_aware(at).astimezone(UTC).isoformat()}"


def decide(
    plan_definition: dict[str, Any],
    record: PatientRecord,
    session: Session | None,
    at: datetime,
) -> Decision:
    """Decide at clock `at` (for a session: its effectivePeriod end)."""
    params = read_params(plan_definition)
    clock = _aware(at)
    care_plan_ref = ref_key(record.care_plan) if record.care_plan else None
    key = decision_key(session, at)
    first_day = local_date(clock - timedelta(days=lookback_days(params)), clock.tzinfo)
    past = earlier(record.earlier_decisions, clock, key)
    stored_state = state_before(past, clock.tzinfo, first_day)
    state = _with_plan(stored_state, record.care_plan, params)
    patient = patient_features(record, params, clock)
    sess = (
        session_features(session, params, record.index.panels, clock.tzinfo, care_plan_ref)
        if session
        else None
    )
    flexion = _flexion_status(record.care_plan, params, state.level)
    ctx = r.Context(params, clock, patient, state, sess, flexion)
    outcome = _primary(ctx)
    warnings = tuple(_fired(w) for w in r.WARNINGS if w.fires(ctx))
    cobra_review = r.R12 not in outcome.fired and r.cobra_missed_review(ctx)
    if cobra_review:
        outcome.review = True
        outcome.note = " ".join(
            x
            for x in (
                outcome.note,
                f"W1 in {params.cobra_missed_review_after} sessions in a row: a clinician review "
                "is requested",
            )
            if x
        )
    today = local_date(clock, clock.tzinfo)
    retry_start, retry_end, hold_is_new = _retry_window(outcome, state, params, today)
    tolerated = (
        outcome.code in (CONTINUE, PROGRESS)
        and r.R9 in outcome.fired
        and (
            sess is not None
            and sess.last_pain is not None
            and sess.last_pain <= params.progress_max_last_pain
        )
    )
    decision = Decision(
        code=outcome.code,
        level_current=state.level,
        level_new=outcome.level_new,
        fired=tuple(_fired(x) for x in outcome.fired),
        warnings=warnings,
        features={},
        plan_canonical=params.plan_canonical,
        plan_id=params.plan_id,
        clock=clock,
        patient_ref=record.patient_ref,
        care_plan_ref=care_plan_ref,
        session_key=key,
        input_refs=tuple(sorted({*(sess.input_refs if sess else ()), *patient.input_refs})),
        retry_start=retry_start,
        retry_end=retry_end,
        hold_is_new=hold_is_new,
        recheck_date=(
            today + timedelta(days=params.not_eligible_recheck_days)
            if r.R7 in outcome.fired
            else None
        ),
        review_requested=outcome.review,
        urgent=outcome.urgent,
        data_requirements=(data_requirements(ctx, params) if outcome.code == DATA_REQUIRED else ()),
        explanation=outcome.note,
        cobra_review=cobra_review,
    )
    hold_started = _hold_started(outcome, state, today)
    this = PastDecision(
        at=clock,
        code=outcome.code,
        fired=tuple(x.id for x in outcome.fired),
        warned=tuple(w.id for w in warnings),
        level_current=state.level,
        level_new=outcome.level_new,
        session_key=key,
        tolerated=tolerated,
        hold_started=hold_started,
        retry_start=retry_start,
        retry_end=retry_end,
    )
    # Carried forward from the state as stored (before a clinician's resume via the CarePlan),
    # exactly what folding this decision onto the earlier ones would give.
    after = since(advance(stored_state, this, clock.tzinfo), first_day)
    previous = past[-1].session_key if past else None
    features = feature_values(decision, ctx, tolerated, hold_started, after, previous)
    return Decision(**{**decision.__dict__, "features": features})


def _retry_window(
    outcome: _Outcome, state: PlanState, params: Params, today: date
) -> tuple[date | None, date | None, bool]:
    if outcome.code != HOLD_BACK:
        return None, None, False
    if r.R11 in outcome.fired and outcome.fired[0] is r.R11:  # the same hold, same window
        return state.retry_start, state.retry_end, False
    return (
        today + timedelta(days=params.retry_min_days),
        today + timedelta(days=params.retry_max_days),
        True,
    )


def _hold_started(outcome: _Outcome, state: PlanState, today: date) -> date | None:
    if outcome.code != HOLD_BACK:
        return None
    return state.hold_started if outcome.fired[0] is r.R11 else today


__all__ = ["Decision", "FiredRule", "Session", "decide", "session_clock"]
