"""Rules R0-R12 and warnings W1-W5 of the decision table, one small named unit each.

Each rule carries its id, its tag (SRC / LIT / DESIGN) and the sentence it implements, so a
decision can quote exactly what fired. `PRIMARY` is ordered: the first match decides (decide.py).
Modifiers (R5 beside R4, R6, R10, R11) and warnings never decide on their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from service.protocol.fhirdata import local_date
from service.protocol.history import (
    DATA_REQUIRED,
    HOLD_BACK,
    NOT_YET_ELIGIBLE,
    START,
    STOP_AND_REFER,
    SUPERVISION_REQUIRED,
    PlanState,
)
from service.protocol.parameters import (
    BEFORE_START_CHECK,
    STOPPED_STORE_AND_ANSWER,
    Params,
)
from service.protocol.patient_features import PatientFeatures
from service.protocol.session_features import (
    LOCATION_ORDER,
    RISING,
    STABLE,
    WEARING_OFF,
    SessionFeatures,
)

SRC, LIT, DESIGN = "SRC", "LIT", "DESIGN"


@dataclass(frozen=True)
class Context:
    """Everything a rule may look at, all computed at the decision clock."""

    params: Params
    clock: datetime
    patient: PatientFeatures
    state: PlanState
    session: SessionFeatures | None
    flexion_status: str | None = None  # the CarePlan's current flexion activity, if known

    @property
    def today(self) -> date:
        return local_date(self.clock, self.clock.tzinfo)

    @property
    def window_open(self) -> bool:
        return self.state.retry_start is None or self.today >= self.state.retry_start


@dataclass(frozen=True)
class Rule:
    id: str
    tag: str
    source: str
    decision: str | None  # the decision a primary rule makes; None for modifiers and warnings
    check: Callable[[Context], bool]

    def fires(self, ctx: Context) -> bool:
        return self.check(ctx)


def missing_eligibility_inputs(ctx: Context) -> tuple[str, ...]:
    """What a start decision needs but does not have (R0 before a start)."""
    missing = []
    if ctx.patient.red_flags.status == "missing":
        missing.append("red-flag-screen")
    if ctx.patient.phase is None:
        missing.append("episode-phase")
    # criteria A/B only matter for a self-directed start; an acute patient goes to R3 anyway
    no_criteria_data = (
        ctx.patient.daily_pain_days == 0 and ctx.patient.criterion_b.extension_days is None
    )
    if ctx.patient.phase != "acute" and no_criteria_data:
        missing.append("daily-pain")
    return tuple(missing)


def _r0(ctx: Context) -> bool:
    if ctx.session is not None:
        return len(ctx.session.reps) < ctx.params.min_repetitions_scored
    return not ctx.state.started and bool(missing_eligibility_inputs(ctx))


def _r3(ctx: Context) -> bool:
    if ctx.patient.phase != "acute":
        return False
    if ctx.session is None:
        return not ctx.state.started
    # Supervision not reported cannot be assumed: only a reported supervision passes.
    return ctx.session.supervised is not True


def _same_hold(ctx: Context) -> bool:
    return ctx.state.on_hold and not ctx.window_open


def _tolerable(s: SessionFeatures | None) -> bool:
    if s is None:
        return False
    pain_free = s.max_pain == 0
    return s.pattern == WEARING_OFF or (s.pattern == STABLE and (s.central or pain_free))


def consecutive_tolerated_days(ctx: Context) -> int:
    """Days in a row with only tolerated sessions at the current level, each with at least
    [progress-min-sessions-per-day] of them (C4): ending today once today has enough, else
    ending yesterday."""
    s = ctx.session
    if not _tolerable(s) or s is None or s.last_pain is None:
        return 0
    if s.last_pain > ctx.params.progress_max_last_pain or ctx.today in ctx.state.intolerant_days:
        return 0
    need = ctx.params.progress_min_sessions_per_day
    sessions = ctx.state.tolerated_sessions

    def enough(day: date, this_one: int = 0) -> bool:
        # One session a day (1.0.0) needs no count: a tolerated day had one.
        return need <= 1 or sessions.count(day) + this_one >= need

    good = set(ctx.state.tolerated_days)
    today_counts = enough(ctx.today, 1)
    count, day = (1 if today_counts else 0), ctx.today - timedelta(days=1)
    while day in good and enough(day):
        count, day = count + 1, day - timedelta(days=1)
    return count


def _r6(ctx: Context) -> bool:
    # "Within [28] days" includes day 28 (C10).
    window = ctx.params.repeat_holdback_window_days
    return any((ctx.today - held).days <= window for held in ctx.state.earlier_holds)


def _r9b(ctx: Context) -> bool:
    """Stable pain away from the spine that stayed where it was (C6); a version reports it
    under its own id when its parameters name R9b."""
    s = ctx.session
    if "R9b" not in ctx.params.named_rules or s is None or s.pattern != STABLE:
        return False
    where = s.location_end or s.location_start
    away = where in LOCATION_ORDER and where != "central"
    return away and s.peripheralized is False and not _tolerable(s)


def _r12(ctx: Context) -> bool:
    return (
        ctx.session is not None
        and ctx.state.stopped
        and ctx.params.stopped_plan_sessions == (STOPPED_STORE_AND_ANSWER)
    )


def _w5(ctx: Context) -> bool:
    """A retry after the window closed (C9), in the versions whose parameters name W5."""
    end = ctx.state.retry_end
    return (
        "W5" in ctx.params.named_rules
        and ctx.session is not None
        and ctx.state.on_hold
        and end is not None
        and ctx.today > end
    )


def cobra_missed_review(ctx: Context) -> bool:
    """W1 in [cobra-missed-review-after] sessions in a row, this one the last (C7); 0 = never.
    Once per run, so a patient who keeps forgetting is not reviewed at every session."""
    after = ctx.params.cobra_missed_review_after
    return after > 0 and W1.fires(ctx) and ctx.state.cobra_missed + 1 == after


def before_start_not_eligible(ctx: Context) -> bool:
    """The first session on a plan whose patient was not yet eligible (C8), checked by R7/R8
    at the session's clock: neither criterion holds and nobody supervised it."""
    return (
        ctx.params.session_before_start == BEFORE_START_CHECK
        and ctx.session is not None
        and not ctx.state.started
        and ctx.flexion_status == "not-started"
        and not _eligible(ctx)
        and ctx.session.supervised is not True
    )


def _r10(ctx: Context) -> bool:
    return (
        ctx.state.level < ctx.params.top_level
        and not ctx.state.on_hold
        and consecutive_tolerated_days(ctx) >= ctx.params.progress_consecutive_days
    )


def _eligible(ctx: Context) -> bool:
    return ctx.patient.criterion_a or ctx.patient.criterion_b.holds


def _no_session_not_started(ctx: Context) -> bool:
    return ctx.session is None and not ctx.state.started


R0 = Rule(
    "R0",
    DESIGN,
    "a session has fewer than [3] repetitions scored, or eligibility inputs are missing before "
    "a start",
    DATA_REQUIRED,
    _r0,
)
R1 = Rule(
    "R1",
    LIT,
    "a red flag is positive (bladder/bowel change, saddle numbness, progressive or bilateral leg "
    "weakness or numbness, fever, unexplained weight loss, history of cancer, major trauma) "
    "(NICE NG59; IFOMPT 2020 framework)",
    STOP_AND_REFER,
    lambda ctx: ctx.patient.red_flags.status == "positive",
)
R2 = Rule(
    "R2",
    LIT,
    "symptoms peripheralized during the session (pain moved away from the spine into buttock/leg) "
    "(McKenzie MDT centralization/peripheralization, May & Aina 2012)",
    STOP_AND_REFER,
    lambda ctx: ctx.session is not None and ctx.session.peripheralized is True,
)
R3 = Rule(
    "R3",
    SRC,
    "on the acute stage of a back pain episode it needs to be performed under the qualified "
    "supervision",
    SUPERVISION_REQUIRED,
    _r3,
)
R4 = Rule(
    "R4",
    SRC,
    "If this exercise causes pain that increases with each repetition, stop. In this case, it is "
    "probably too soon to start flexion and you should wait and try it in another week or two.",
    HOLD_BACK,
    lambda ctx: ctx.session is not None and ctx.session.pattern == RISING,
)
R5 = Rule(
    "R5",
    LIT,
    "any repetition scored >= [7]: hold-back with a clinician review request (severe-pain band of "
    "the NRS); it holds back even when the pain wears off, a deliberate safety reading over "
    "'an initial pain that wears off ... is acceptable' (R5 over R9)",
    HOLD_BACK,
    lambda ctx: (
        ctx.session is not None
        and ctx.session.max_pain is not None
        and ctx.session.max_pain >= ctx.params.severe_pain_threshold
    ),
)
R6 = Rule(
    "R6",
    DESIGN,
    "R4 or R5 decided, and an earlier hold-back of this plan lies within [28] days: still "
    "hold-back, and a clinician review request is added",
    None,
    _r6,
)
R7 = Rule(
    "R7",
    SRC,
    "no session yet, self-directed, and neither criterion A nor B holds: not-yet-eligible, "
    "re-check in [7] days",
    NOT_YET_ELIGIBLE,
    lambda ctx: _no_session_not_started(ctx) and not _eligible(ctx),
)
R8 = Rule(
    "R8",
    SRC,
    "You should begin Pulling knees into chest lying when you have mostly recovered from an acute "
    "episode of lower back pain and have had long pain-free periods for two to three weeks [A]; "
    "This exercise may also be necessary if you have significantly improved with restoring lumbar "
    "lordosis but after two or three weeks still experience a small amount of pain at the centre "
    "of your back [B]",
    START,
    lambda ctx: _no_session_not_started(ctx) and _eligible(ctx),
)
R9 = Rule(
    "R9",
    SRC,
    "An initial pain that wears off gradually with repetition of the exercise is acceptable; "
    "It is not uncommon for some central, midline, lower back pain to occur",
    "continue",
    lambda ctx: _tolerable(ctx.session),
)
R9B = Rule(
    "R9b",
    DESIGN,
    "stable pain that is not central (one side, buttock) and did not peripheralize: continue, "
    "with a clinician review request",
    "continue",
    _r9b,
)
R10 = Rule(
    "R10",
    LIT,
    "[7] consecutive days of tolerated sessions (R9 only, last repetition <= [2]) at the current "
    "level, each day with at least [progress-min-sessions-per-day] sessions ('repeat the "
    "sessions three or four times per day'): progress to the next level (McKenzie, Treat Your "
    "Own Back; Farrar 2001; Ostelo 2008)",
    "progress",
    _r10,
)
R11 = Rule(
    "R11",
    SRC,
    "try it in another week or two: on hold and the retry window has opened, the next session is "
    "evaluated from R0 and, if tolerated, the plan resumes at level 1; a session before the window "
    "opens is answered with the same hold",
    None,
    lambda ctx: ctx.state.on_hold,
)

R12 = Rule(
    "R12",
    DESIGN,
    "the stop stands: a session on a plan stopped by R1 or R2 is stored and answered "
    "stop-and-refer, linked to the open review request, until a clinician resumes the plan",
    STOP_AND_REFER,
    _r12,
)

W1 = Rule(
    "W1",
    SRC,
    "this and all other flexion exercises must always be followed immediately by a Cobra "
    "(Extension in Lying).",
    None,
    lambda ctx: ctx.session is not None and ctx.session.extension_followed is not True,
)
W2 = Rule(
    "W2",
    SRC,
    "Begin these exercises with caution. Do only 5 \N{EN DASH} 6 repetitions per session",
    None,
    lambda ctx: (
        ctx.session is not None
        and ctx.session.repetitions_recorded > ctx.params.level(ctx.state.level).max_repetitions
    ),
)
W3 = Rule(
    "W3",
    SRC,
    "repeat the sessions three or four times per day",
    None,
    lambda ctx: (
        ctx.session is not None
        and ctx.session.sessions_that_day > ctx.params.level(ctx.state.level).sessions_max_per_day
    ),
)
W4 = Rule(
    "W4",
    SRC,
    "It is important that you do not raise your head as you perform this exercise. It is also "
    "important that you do not straighten your legs as you lower them.",
    None,
    lambda ctx: ctx.session is not None and bool(ctx.session.technique_faults),
)

W5 = Rule(
    "W5",
    SRC,
    "wait and try it in another week or two: retry later than the window",
    None,
    _w5,
)

# Safety first; then the standing hold; then the table's order. R9 is checked last among sessions.
SAFETY: tuple[Rule, ...] = (R0, R1, R2)
CASE: tuple[Rule, ...] = (R3, R4, R5, R7, R8, R9, R9B)
WARNINGS: tuple[Rule, ...] = (W1, W2, W3, W4, W5)
ALL_RULES: tuple[Rule, ...] = (
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R9B,
    R10,
    R11,
    R12,
    *WARNINGS,
)
SAME_HOLD = _same_hold
