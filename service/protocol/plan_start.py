"""When a CarePlan starts, and the refusal of anything timed before it (pure).

A session or an `$evaluate` clock before the plan's start cannot belong to the plan (a session
dated 1900 was decided before this check). The start is the CarePlan's `period.start`; without
one, when the plan was first stored (its first version's `meta.lastUpdated`, which the caller
reads from the history). This is the reading of the protocol's 1.1.0 table (C10), so every
version refuses alike. A date alone starts at 00:00 of that date at UTC+14:00, the earliest
that day begins anywhere: `$apply` writes the UTC date, and a patient west of Greenwich who
enrols in the evening exercises on "the day before" it in their own calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from service.protocol.conformance import Problem
from service.protocol.fhirdata import Json, parse_datetime

# The earliest UTC offset in use: a date without a time begins here first.
_EARLIEST_OFFSET = timezone(timedelta(hours=14))


@dataclass(frozen=True)
class PlanStart:
    moment: datetime
    said: str  # how a refusal names it


def plan_start(care_plan: Json, first_stored: datetime | None) -> PlanStart | None:
    """The plan's start: `period.start`, else `first_stored` (None: nothing to compare)."""
    text = (care_plan.get("period") or {}).get("start")
    if isinstance(text, str) and text:
        moment = parse_datetime(text, _EARLIEST_OFFSET)
        return PlanStart(moment, f"its period.start {text}") if moment else None
    if first_stored is None:
        return None
    shown = first_stored.astimezone(UTC).isoformat(timespec="milliseconds")
    return PlanStart(
        first_stored, f"first stored {shown.replace('+00:00', 'Z')}, it has no period.start"
    )


def before_plan_start(
    times: list[tuple[str, datetime | None]], start: PlanStart | None, care_plan_id: str
) -> list[Problem]:
    """The single check: each (element path, time) that lies before the plan's start."""
    if start is None:
        return []
    return [
        Problem(where, f"the time lies before CarePlan/{care_plan_id} started ({start.said})")
        for where, moment in times
        if moment is not None and moment < start.moment
    ]
