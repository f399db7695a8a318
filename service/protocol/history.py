"""The plan's state, read back from its earlier GuidanceResponses.

The decision service writes its state into each GuidanceResponse's output parameters (the names
below), so the state is a pure function of the stored decisions and a replay gives the same
answer. Only decisions strictly before the clock, and not for the session being decided, count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
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

_RULE_ID = re.compile(r"^R\d+$")  # warnings never carry plan state


@dataclass(frozen=True)
class PastDecision:
    at: datetime
    code: str
    fired: tuple[str, ...]
    level_current: int | None
    level_new: int | None
    session_key: str | None
    tolerated: bool | None
    hold_started: date | None
    retry_start: date | None
    retry_end: date | None


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
        level_current=values.get(P_LEVEL_CURRENT),
        level_new=values.get(P_LEVEL_NEW),
        session_key=values.get(P_SESSION),
        tolerated=tolerated if isinstance(tolerated, bool) else None,
        hold_started=_as_date(values.get(P_HOLD_STARTED)),
        retry_start=_as_date(values.get(P_RETRY_START)),
        retry_end=_as_date(values.get(P_RETRY_END)),
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


def plan_state(decisions: list[PastDecision], tz: tzinfo | None) -> PlanState:
    """Fold the decisions, oldest first, into the plan's current state."""
    started = on_hold = stopped = False
    level = 1
    hold: tuple[date | None, date | None, date | None] = (None, None, None)
    stop_rules: tuple[str, ...] = ()
    holds: set[date] = set()
    run: list[PastDecision] = []
    for d in decisions:
        if d.code in (START, CONTINUE, PROGRESS, HOLD_BACK):
            started, stopped = True, False
            level = d.level_new or d.level_current or level
            on_hold = d.code == HOLD_BACK
            if on_hold:
                hold = (d.hold_started, d.retry_start, d.retry_end)
                if d.hold_started:
                    holds.add(d.hold_started)
        elif d.code == STOP_AND_REFER:
            stopped, stop_rules = True, d.fired
        # The resuming session itself counts as day one of the new run.
        if d.code == CONTINUE and "R11" in d.fired:
            run = [d]
        elif _resets_level_run(d):
            run = []
        elif d.code == CONTINUE:
            run.append(d)
    good = {local_date(d.at, tz) for d in run if d.tolerated}
    bad = {local_date(d.at, tz) for d in run if not d.tolerated}
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
        tolerated_days=tuple(sorted(good - bad)),
        intolerant_days=tuple(sorted(bad)),
    )
