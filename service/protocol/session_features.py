"""Features of one session: the pain series, its pattern, location, technique and context.

Pattern definitions are the DESIGN rows of the decision table; every number comes from Params.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, tzinfo

from service.protocol.codes import CAREPLAN_CS, REPETITION_INDEX
from service.protocol.fhirdata import (
    Json,
    code_in,
    component_value,
    effective_end,
    effective_start,
    identifier_key,
    is_void,
    local_date,
    ref_key,
    score,
)
from service.protocol.inputs import Session, is_repetition
from service.protocol.parameters import RISING_MAJORITY_UP, Params

# Pain locations ordered by distance from the spine; moving right = peripheralization.
LOCATION_ORDER: tuple[str, ...] = ("central", "one-side", "buttock-thigh", "below-knee")

RISING = "rising"
WEARING_OFF = "wearing-off"
STABLE = "stable"


@dataclass(frozen=True)
class SessionFeatures:
    key: str
    reps: tuple[int, ...]  # scored repetitions in repetition-index order
    repetitions_recorded: int
    pattern: str
    first_pain: int | None
    last_pain: int | None
    max_pain: int | None
    location_start: str | None
    location_end: str | None
    peripheralized: bool | None  # None: a location was not reported
    extension_followed: bool | None  # None everywhere below: not reported
    supervised: bool | None
    head_raised: bool | None
    legs_straightened: bool | None
    start: datetime | None
    end: datetime | None
    sessions_that_day: int
    input_refs: tuple[str, ...]

    @property
    def technique_faults(self) -> tuple[str, ...]:
        faults = (("head-raised", self.head_raised), ("legs-straightened", self.legs_straightened))
        return tuple(name for name, present in faults if present)

    @property
    def central(self) -> bool:
        """Pain stayed at the spine (the end location, else the start location, is central)."""
        return (self.location_end or self.location_start) == "central"


def is_rising(reps: tuple[int, ...], params: Params) -> bool:
    """DESIGN: >= [3] repetitions, last - first >= [2], and by [rising-rule]: no single step
    down larger than [1] (`no-large-dip`, 1.0.0), or more steps up than steps down
    (`majority-up`, 1.1.0 C1: a dip does not hide a climb)."""
    if len(reps) < params.rising_min_repetitions:
        return False
    if reps[-1] - reps[0] < params.rising_min_increase:
        return False
    steps = [b - a for a, b in itertools.pairwise(reps)]
    if params.rising_rule == RISING_MAJORITY_UP:
        return sum(step > 0 for step in steps) > sum(step < 0 for step in steps)
    return all(-step <= params.rising_max_step_down for step in steps)


def is_wearing_off(reps: tuple[int, ...], params: Params) -> bool:
    """DESIGN: first > 0, last < first, and no step up larger than [1]."""
    if len(reps) < 2 or reps[0] <= 0 or reps[-1] >= reps[0]:
        return False
    steps = [b - a for a, b in itertools.pairwise(reps)]
    return all(step <= params.wearing_off_max_step_up for step in steps)


def pattern_of(reps: tuple[int, ...], params: Params) -> str:
    if is_rising(reps, params):
        return RISING
    if is_wearing_off(reps, params):
        return WEARING_OFF
    return STABLE


def _ordered_scores(members: tuple[Json, ...]) -> tuple[list[Json], tuple[int, ...]]:
    """Live repetitions and their scores, in repetition-index order.

    Sorting on (index, score) makes the result independent of the order the Observations came in.
    """
    reps = [m for m in members if not is_void(m) and is_repetition(m)]
    keyed = sorted(
        reps,
        key=lambda m: (
            component_value(m, REPETITION_INDEX, "valueInteger"),
            -1 if score(m) is None else score(m),
        ),
    )
    return keyed, tuple(s for m in keyed if (s := score(m)) is not None)


def _location(panel: Json, code: str) -> str | None:
    return code_in(component_value(panel, code, "valueCodeableConcept"), CAREPLAN_CS)


def _peripheralized(start: str | None, end: str | None) -> bool | None:
    if start not in LOCATION_ORDER or end not in LOCATION_ORDER:
        return None
    return LOCATION_ORDER.index(end) > LOCATION_ORDER.index(start)


def _supervised(panel: Json) -> bool | None:
    reported = component_value(panel, "supervised", "valueBoolean")
    if reported is not None:
        return bool(reported)
    # A clinician named as performer supervised the session (decision table: "/ performer").
    for performer in panel.get("performer", []):
        if str(performer.get("reference", "")).startswith(("Practitioner/", "PractitionerRole/")):
            return True
    return None


def sessions_on_day(
    panels: tuple[Json, ...], session: Session, day_tz: tzinfo | None, care_plan_ref: str | None
) -> int:
    """Sessions of this plan on the session's day, the session itself counted once."""
    end = effective_end(session.panel)
    if end is None:
        return 1
    day = local_date(end, day_tz)
    seen = {session.key}
    for obs in panels:
        if care_plan_ref and care_plan_ref not in {
            b.get("reference") for b in obs.get("basedOn", [])
        }:
            continue
        when = effective_end(obs)
        key = identifier_key(obs) or ref_key(obs)
        if when is not None and local_date(when, day_tz) == day and key not in seen:
            seen.add(key or f"anon-{len(seen)}")
    return len(seen)


def session_features(
    session: Session,
    params: Params,
    panels: tuple[Json, ...],
    day_tz: tzinfo | None,
    care_plan_ref: str | None,
) -> SessionFeatures:
    panel = session.panel
    members, reps = _ordered_scores(session.members)
    start, end = _location(panel, "pain-location-start"), _location(panel, "pain-location-end")
    refs = [r for r in [ref_key(panel), *(ref_key(m) for m in members)] if r]
    return SessionFeatures(
        key=session.key,
        reps=reps,
        repetitions_recorded=len(members),
        pattern=pattern_of(reps, params),
        first_pain=reps[0] if reps else None,
        last_pain=reps[-1] if reps else None,
        max_pain=max(reps) if reps else None,
        location_start=start,
        location_end=end,
        peripheralized=_peripheralized(start, end),
        extension_followed=component_value(panel, "extension-followed", "valueBoolean"),
        supervised=_supervised(panel),
        head_raised=component_value(panel, "head-raised", "valueBoolean"),
        legs_straightened=component_value(panel, "legs-straightened", "valueBoolean"),
        start=effective_start(panel),
        end=effective_end(panel),
        sessions_that_day=sessions_on_day(panels, session, day_tz, care_plan_ref),
        input_refs=tuple(refs),
    )
