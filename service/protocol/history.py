"""The plan's state, read back from its earlier GuidanceResponses.

The decision service writes its state into each GuidanceResponse's output parameters (the names
below), so the state is a pure function of the stored decisions and a replay gives the same
answer. Only decisions strictly before the clock, and not for the session being decided, count.

Each decision also carries the plan state *after* it (the `state-*` parameters): the next
decision starts from the latest one instead of folding a month of decisions, so its cost does
not grow with the patient's history. Decisions written before that (no `state-level`) are
folded as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, tzinfo
from itertools import pairwise
from typing import Any

from service.protocol.codes import CAREPLAN_CS
from service.protocol.fhirdata import Json, code_in, local_date, parse_datetime

# Output-parameter names that carry the plan's state (written by outputs.py).
P_DECISION = "decision"
P_LEVEL_CURRENT = "level-current"
P_LEVEL_NEW = "level-new"
P_SESSION = "session-identifier"
P_TOLERATED = "tolerated"
P_HOLD_STARTED = "hold-started"
P_RETRY_START = "retry-window-start"
P_RETRY_END = "retry-window-end"

# The plan state after the decision (carried forward; see carried_state / state_parameters).
S_STARTED = "state-started"
S_LEVEL = "state-level"
S_ON_HOLD = "state-on-hold"
S_HOLD_STARTED = "state-hold-started"
S_RETRY_START = "state-retry-window-start"
S_RETRY_END = "state-retry-window-end"
S_STOPPED = "state-stopped"
S_STOP_RULES = "state-stop-rules"
S_HOLDS = "state-hold-backs"
S_TOLERATED_DAYS = "state-tolerated-days"
S_INTOLERANT_DAYS = "state-intolerant-days"
# One date per tolerated session of the run (a day repeats): R10 under C4 counts them per day.
S_TOLERATED_SESSIONS = "state-tolerated-sessions"
# Sessions in a row, up to this decision, without the Cobra recorded (W1; C7 escalates).
S_COBRA_MISSED = "state-cobra-missed"
# The session key of the decision the state was carried from: lets a reader check that the
# decisions it has form one chain (a late-arriving session breaks it, and is then folded).
S_PREVIOUS = "state-previous"

# The session key of an $evaluate decision starts with this (decide.decision_key).
EVALUATION_KEY_PREFIX = "evaluation|"

# Decision codes (decision table, column "decision").
DATA_REQUIRED = "data-required"
STOP_AND_REFER = "stop-and-refer"
SUPERVISION_REQUIRED = "supervision-required"
HOLD_BACK = "hold-back"
NOT_YET_ELIGIBLE = "not-yet-eligible"
START = "start"
CONTINUE = "continue"
PROGRESS = "progress"
DECISION_CODES = (
    DATA_REQUIRED,
    STOP_AND_REFER,
    SUPERVISION_REQUIRED,
    HOLD_BACK,
    NOT_YET_ELIGIBLE,
    START,
    CONTINUE,
    PROGRESS,
)

_RULE_ID = re.compile(r"^R\d+[a-z]?$")  # warnings never carry plan state
# Rules that answer a stopped plan without stopping it again (C5).
STOP_STANDS = "R12"
STOPPING_RULES = ("R1", "R2")


@dataclass(frozen=True)
class PlanState:
    started: bool = False
    level: int = 1
    on_hold: bool = False
    hold_started: date | None = None
    retry_start: date | None = None
    retry_end: date | None = None
    stopped: bool = False
    stop_rules: tuple[str, ...] = ()
    earlier_holds: tuple[date, ...] = ()  # the days each distinct hold-back began
    tolerated_days: tuple[date, ...] = ()  # days at this level where every session was tolerated
    intolerant_days: tuple[date, ...] = ()  # days at this level with a session not tolerated
    tolerated_sessions: tuple[date, ...] = ()  # the day of each tolerated session of the run
    cobra_missed: int = 0  # sessions in a row without the Cobra recorded


@dataclass(frozen=True)
class PastDecision:
    at: datetime
    code: str
    fired: tuple[str, ...]
    warned: tuple[str, ...]  # the warnings (W1-W5) it carried
    level_current: int | None
    level_new: int | None
    session_key: str | None
    tolerated: bool | None
    hold_started: date | None
    retry_start: date | None
    retry_end: date | None
    state: PlanState | None = None  # the plan state after it, when the decision carries it
    previous: str | None = None  # the session key of the decision that state was carried from


def _output_parameters(response: Json) -> dict[str, Any]:
    ref = str((response.get("outputParameters") or {}).get("reference", ""))
    for contained in response.get("contained", []):
        if contained.get("resourceType") == "Parameters" and f"#{contained.get('id')}" == ref:
            return {
                p["name"]: next((v for k, v in p.items() if k.startswith("value")), None)
                for p in contained.get("parameter", [])
                if "name" in p
            }
    return {}


def _as_date(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None


def _dates(value: Any) -> tuple[date, ...]:
    if not isinstance(value, str) or not value:
        return ()
    return tuple(d for d in (_as_date(part) for part in value.split(",")) if d is not None)


def _carried_state(values: dict[str, Any]) -> PlanState | None:
    level = values.get(S_LEVEL)
    if not isinstance(level, int) or isinstance(level, bool):
        return None  # written before decisions carried their state
    rules = values.get(S_STOP_RULES)
    return PlanState(
        started=values.get(S_STARTED) is True,
        level=level,
        on_hold=values.get(S_ON_HOLD) is True,
        hold_started=_as_date(values.get(S_HOLD_STARTED)),
        retry_start=_as_date(values.get(S_RETRY_START)),
        retry_end=_as_date(values.get(S_RETRY_END)),
        stopped=values.get(S_STOPPED) is True,
        stop_rules=tuple(rules.split(",")) if isinstance(rules, str) and rules else (),
        earlier_holds=_dates(values.get(S_HOLDS)),
        tolerated_days=_dates(values.get(S_TOLERATED_DAYS)),
        intolerant_days=_dates(values.get(S_INTOLERANT_DAYS)),
        tolerated_sessions=_dates(values.get(S_TOLERATED_SESSIONS)),
        cobra_missed=_count(values.get(S_COBRA_MISSED)),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def carries_state(response: Json) -> bool:
    """A live decision that carries the plan state after it (so no older one is needed)."""
    if response.get("status") == "entered-in-error":
        return False
    return _carried_state(_output_parameters(response)) is not None


def state_parameters(state: PlanState, previous: str | None) -> dict[str, Any]:
    """The `state-*` output parameters a decision carries (None = left out)."""

    def days(values: tuple[date, ...]) -> str | None:
        return ",".join(d.isoformat() for d in values) or None

    return {
        S_STARTED: state.started,
        S_LEVEL: state.level,
        S_ON_HOLD: state.on_hold,
        S_HOLD_STARTED: state.hold_started,
        S_RETRY_START: state.retry_start,
        S_RETRY_END: state.retry_end,
        S_STOPPED: state.stopped,
        S_STOP_RULES: ",".join(state.stop_rules) or None,
        S_HOLDS: days(state.earlier_holds),
        S_TOLERATED_DAYS: days(state.tolerated_days),
        S_INTOLERANT_DAYS: days(state.intolerant_days),
        S_TOLERATED_SESSIONS: days(state.tolerated_sessions),
        S_COBRA_MISSED: state.cobra_missed or None,
        S_PREVIOUS: previous,
    }


def parse_decision(response: Json, tz: tzinfo | None) -> PastDecision | None:
    """Read one of our GuidanceResponses; None for anything we did not write."""
    at = parse_datetime(response.get("occurrenceDateTime"))
    codes = [code_in(rc, CAREPLAN_CS) for rc in response.get("reasonCode", [])]
    decision = next((c for c in codes if c in DECISION_CODES), None)
    if at is None or decision is None:
        return None
    values = _output_parameters(response)
    tolerated = values.get(P_TOLERATED)
    return PastDecision(
        at=at.astimezone(tz) if tz else at,
        code=decision,
        fired=tuple(c for c in codes if c and _RULE_ID.match(c)),
        warned=tuple(c for c in codes if c and c.startswith("W")),
        level_current=values.get(P_LEVEL_CURRENT),
        level_new=values.get(P_LEVEL_NEW),
        session_key=values.get(P_SESSION),
        tolerated=tolerated if isinstance(tolerated, bool) else None,
        hold_started=_as_date(values.get(P_HOLD_STARTED)),
        retry_start=_as_date(values.get(P_RETRY_START)),
        retry_end=_as_date(values.get(P_RETRY_END)),
        state=_carried_state(values),
        previous=values.get(S_PREVIOUS) if isinstance(values.get(S_PREVIOUS), str) else None,
    )


def earlier(responses: tuple[Json, ...], clock: datetime, current_key: str) -> list[PastDecision]:
    """Decisions before the clock, oldest first, leaving out the one for this very session."""
    parsed = [
        parse_decision(r, clock.tzinfo) for r in responses if r.get("status") != "entered-in-error"
    ]
    kept = [d for d in parsed if d and d.at <= clock and d.session_key != current_key]
    return sorted(kept, key=lambda d: (d.at, d.code, d.session_key or ""))


def _resets_level_run(decision: PastDecision) -> bool:
    """A decision after which the run of tolerated days at the current level starts again."""
    if decision.code in (DATA_REQUIRED, NOT_YET_ELIGIBLE):
        return False
    return decision.code != CONTINUE or "R11" in decision.fired


def advance(state: PlanState, d: PastDecision, tz: tzinfo | None) -> PlanState:
    """The plan state after decision `d` (one step of the fold)."""
    started, stopped, level, on_hold = state.started, state.stopped, state.level, state.on_hold
    hold = (state.hold_started, state.retry_start, state.retry_end)
    stop_rules, holds = state.stop_rules, set(state.earlier_holds)
    if d.code in (START, CONTINUE, PROGRESS, HOLD_BACK):
        started, stopped = True, False
        level = d.level_new or d.level_current or level
        on_hold = d.code == HOLD_BACK
        if on_hold:
            hold = (d.hold_started, d.retry_start, d.retry_end)
            if d.hold_started:
                holds.add(d.hold_started)
    elif d.code == STOP_AND_REFER and STOP_STANDS in d.fired:
        # The standing stop answered a later session: the stop's own rules stay its reasons.
        stopped = True
        stop_rules = state.stop_rules or tuple(x for x in d.fired if x in STOPPING_RULES)
    elif d.code == STOP_AND_REFER:
        stopped, stop_rules = True, d.fired
    good, bad = set(state.tolerated_days), set(state.intolerant_days)
    sessions = list(state.tolerated_sessions)
    # The resuming session itself counts as day one of the new run.
    counts = d.code == CONTINUE
    if (d.code == CONTINUE and "R11" in d.fired) or _resets_level_run(d):
        good, bad, sessions = set(), set(), []
    if counts:
        day = local_date(d.at, tz)
        if not d.tolerated:
            bad.add(day)
        good = good - bad if not d.tolerated else good | ({day} - bad)
        sessions = [x for x in sessions if x not in bad] + ([day] if day not in bad else [])
    return PlanState(
        started=started,
        level=level,
        on_hold=on_hold,
        hold_started=hold[0],
        retry_start=hold[1],
        retry_end=hold[2],
        stopped=stopped,
        stop_rules=stop_rules,
        earlier_holds=tuple(sorted(holds)),
        tolerated_days=tuple(sorted(good)),
        intolerant_days=tuple(sorted(bad)),
        tolerated_sessions=tuple(sorted(sessions)),
        cobra_missed=_cobra_missed(state.cobra_missed, d),
    )


def _cobra_missed(before: int, d: PastDecision) -> int:
    """Sessions in a row without the Cobra: W1 adds one, a session with it starts again, an
    evaluation (no session) leaves the count as it was."""
    if is_evaluation(d) or d.session_key is None or d.code == NOT_YET_ELIGIBLE:
        return before  # C8: a session before the plan started counts for nothing
    return before + 1 if "W1" in d.warned else 0


def is_evaluation(decision: PastDecision) -> bool:
    """A decision of $evaluate (no session: a re-check of stored data at a clock)."""
    return (decision.session_key or "").startswith(EVALUATION_KEY_PREFIX)


def current(decisions: list[PastDecision]) -> list[PastDecision]:
    """The decisions without the evaluations a session made stale: one that arrived late with
    a clock between an evaluation and the decision that evaluation's state came from. The
    evaluation re-checked stored data without that session; the next decision re-checks."""
    keys = [d.session_key for d in decisions]
    kept = []
    for i, d in enumerate(decisions):
        if is_evaluation(d) and d.previous in keys[:i]:
            since = keys.index(d.previous) + 1
            if any(not is_evaluation(x) for x in decisions[since:i]):
                continue
        kept.append(d)
    return kept


def plan_state(decisions: list[PastDecision], tz: tzinfo | None) -> PlanState:
    """Fold the decisions, oldest first, into the plan's current state."""
    state = PlanState()
    for d in current(decisions):
        state = advance(state, d, tz)
    return state


def since(state: PlanState, first_day: date) -> PlanState:
    """The state with the days before `first_day` forgotten: the look-back window, as the
    fold over a window of decisions sees it (and a carried state stays small)."""
    return replace(
        state,
        earlier_holds=tuple(d for d in state.earlier_holds if d >= first_day),
        tolerated_days=tuple(d for d in state.tolerated_days if d >= first_day),
        intolerant_days=tuple(d for d in state.intolerant_days if d >= first_day),
        tolerated_sessions=tuple(d for d in state.tolerated_sessions if d >= first_day),
    )


def _one_chain(past: list[PastDecision]) -> bool:
    """Each decision's state was carried from the one before it in time: none arrived late."""
    return all(later.previous == earlier.session_key for earlier, later in pairwise(past))


def state_before(past: list[PastDecision], tz: tzinfo | None, first_day: date) -> PlanState:
    """The plan state before the clock: carried by the latest decision when the decisions
    form one chain, else folded from them in time order (as decisions were made before they
    carried their state, and still are after a session arrives out of time order)."""
    if past and past[-1].state is not None and _one_chain(past):
        return since(past[-1].state, first_day)
    return plan_state(past, tz)
