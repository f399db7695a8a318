"""The CarePlan after a decision: activity statuses change, everything else is kept.

in-progress (start / continue), on-hold (hold-back, supervision-required), stopped
(stop-and-refer), completed + new activities for the next level (progress). A tolerated retry
after a hold (R11) stops the held level and resumes level 1. data-required and not-yet-eligible
leave the plan as it is.
"""

from __future__ import annotations

from typing import cast

import orjson

from service.protocol import history as h
from service.protocol.activities import activity_level, level_activities, set_status
from service.protocol.decide import Decision
from service.protocol.fhirdata import Json
from service.protocol.parameters import Params


def _update(
    activities: list[Json],
    params: Params,
    level: int,
    kinds: tuple[str, ...],
    status: str,
    reason: tuple[str, str] | None = None,
) -> bool:
    """Set the status of this level's activities in place; False when the level has none."""
    found = False
    for i, activity in enumerate(activities):
        where = activity_level(activity, params.levels)
        if where and where[0] == level and where[1] in kinds:
            activities[i] = set_status(activity, status, reason if where[1] == "flexion" else None)
            found = True
    return found


def _activate(activities: list[Json], params: Params, level: int) -> None:
    if not _update(activities, params, level, ("flexion", "extension"), "in-progress"):
        activities.extend(level_activities(params.level(level), "in-progress"))


def _hold_reason(decision: Decision) -> tuple[str, str]:
    if decision.code == h.SUPERVISION_REQUIRED:
        return decision.code, "Acute phase: Flexion in Lying only under qualified supervision."
    if decision.retry_start and decision.retry_end:
        return decision.code, (
            f"Pain increased or was severe; retry between {decision.retry_start.isoformat()} "
            f"and {decision.retry_end.isoformat()}."
        )
    return decision.code, "Flexion in Lying is on hold."


def updated_care_plan(care_plan: Json, decision: Decision, params: Params) -> Json:
    plan = orjson.loads(orjson.dumps(care_plan))  # a deep copy of plain JSON, without copy's walk
    activities: list[Json] = list(plan.get("activity", []))
    current, new = decision.level_current, decision.level_new
    code = decision.code
    if code == h.START or (code == h.CONTINUE and current == new):
        _activate(activities, params, new)
    elif code == h.CONTINUE:  # R11: resume at level 1 after a hold at a higher level
        _update(activities, params, current, ("flexion", "extension"), "stopped")
        _activate(activities, params, new)
    elif code == h.PROGRESS:
        _update(activities, params, current, ("flexion", "extension"), "completed")
        _activate(activities, params, new)
    elif code in (h.HOLD_BACK, h.SUPERVISION_REQUIRED):
        _update(activities, params, current, ("flexion",), "on-hold", _hold_reason(decision))
    elif code == h.STOP_AND_REFER:
        _update(
            activities,
            params,
            current,
            ("flexion", "extension"),
            "stopped",
            (code, "Stopped for clinician review."),
        )
    plan["activity"] = activities
    return cast(Json, plan)
