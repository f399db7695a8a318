"""The flat feature dict a decision reports (GuidanceResponse.outputParameters).

The names under "plan state" are read back by history.py; keep them in step.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from service.protocol import history as h
from service.protocol.rules import Context, consecutive_tolerated_days

if TYPE_CHECKING:
    from service.protocol.decide import Decision


def feature_values(
    decision: Decision,
    ctx: Context,
    tolerated: bool,
    hold_started: date | None,
    state_after: h.PlanState,
    previous: str | None,
) -> dict[str, Any]:
    """name -> value (None = not reported / not applicable)."""
    s, p = ctx.session, ctx.patient
    values: dict[str, Any] = {
        # plan state, read back by history.py
        h.P_DECISION: decision.code,
        h.P_LEVEL_CURRENT: decision.level_current,
        h.P_LEVEL_NEW: decision.level_new,
        h.P_SESSION: decision.session_key,
        h.P_TOLERATED: tolerated,
        h.P_HOLD_STARTED: hold_started,
        h.P_RETRY_START: decision.retry_start,
        h.P_RETRY_END: decision.retry_end,
        "recheck-date": decision.recheck_date,
        "on-hold": ctx.state.on_hold,
        "earlier-hold-backs": len(ctx.state.earlier_holds),
        # patient
        "phase": p.phase,
        "pain-free-days": p.pain_free_days,
        "criterion-a": p.criterion_a,
        "criterion-a-pain-free-days": p.criterion_a_pain_free_days,
        "criterion-b": p.criterion_b.holds,
        "extension-days": p.criterion_b.extension_days,
        "baseline-pain": p.criterion_b.baseline_pain,
        "current-pain": p.criterion_b.current_pain,
        "drop-points": p.criterion_b.drop_points,
        "drop-percent": p.criterion_b.drop_percent,
        "residual-pain-location": p.criterion_b.residual_location,
        "red-flags": p.red_flags.status,
        "red-flag-items": ",".join(p.red_flags.items) or None,
    }
    if s is not None:
        values |= {
            "reps": ",".join(str(x) for x in s.reps),
            "repetitions-scored": len(s.reps),
            "repetitions-recorded": s.repetitions_recorded,
            "pattern": s.pattern,
            "first-pain": s.first_pain,
            "last-pain": s.last_pain,
            "max-pain": s.max_pain,
            "location-start": s.location_start,
            "location-end": s.location_end,
            "peripheralized": s.peripheralized,
            "extension-followed": s.extension_followed,
            "supervised": s.supervised,
            "head-raised": s.head_raised,
            "legs-straightened": s.legs_straightened,
            "session-start": s.start,
            "session-end": s.end,
            "sessions-that-day": s.sessions_that_day,
            "consecutive-tolerated-days": consecutive_tolerated_days(ctx),
        }
    # Last, so a reader of the features sees the decision's own values first.
    return values | h.state_parameters(state_after, previous)
