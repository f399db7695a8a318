"""CarePlan activities for a protocol level, shared by $apply and by decision outputs.

R4 gives a status only to `activity.detail` (not to `activity.reference`), and the status is what
the decisions change, so each exercise is a `detail` with `instantiatesCanonical` the
ActivityDefinition, `scheduledTiming` the level's dose, and the repetitions per session as the
same `repetitions-per-session` Range extension the PlanDefinition uses (detail.quantity is a
SimpleQuantity and cannot hold a range). The activity element id is `level-N-flexion` /
`level-N-extension` so later decisions find it again.
"""

from __future__ import annotations

import copy
from typing import Any

from service.protocol.codes import (
    CAREPLAN_CS,
    EXT_PROTOCOL_LEVEL,
    EXT_REPETITIONS_PER_SESSION,
    SNOMED,
    SNOMED_EXERCISE_THERAPY,
)
from service.protocol.fhirdata import Json
from service.protocol.parameters import Level, Params


def _base(canonical: str) -> str:
    return canonical.split("|")[0]


def _code(definition: Json | None, fallback_text: str) -> Json:
    code = dict((definition or {}).get("code") or {})
    codings = list(code.get("coding", []))
    if not any(c.get("code") == SNOMED_EXERCISE_THERAPY for c in codings):
        codings.append(
            {"system": SNOMED, "code": SNOMED_EXERCISE_THERAPY, "display": "Exercise therapy"}
        )
    return {**code, "coding": codings, "text": code.get("text") or fallback_text}


def find_definition(definitions: dict[str, Json], canonical: str | None) -> Json | None:
    """An ActivityDefinition by url|version, else by url."""
    if not canonical:
        return None
    return definitions.get(canonical) or definitions.get(_base(canonical))


def level_activities(
    level: Level,
    status: str,
    definitions: dict[str, Json] | None = None,
    reason: tuple[str, str] | None = None,
) -> list[Json]:
    """The flexion activity and its Extension in Lying for `level`; reason = (code, text)."""
    definitions = definitions or {}
    flexion_def = find_definition(definitions, level.flexion_canonical)
    reps = f"{level.min_repetitions}-{level.max_repetitions}"
    if level.min_repetitions == level.max_repetitions:
        reps = str(level.min_repetitions)
    per_day = f"{level.sessions_min_per_day}-{level.sessions_max_per_day}"
    flexion: Json = {
        "id": f"level-{level.number}-flexion",
        "detail": {
            "extension": [
                {"url": EXT_PROTOCOL_LEVEL, "valueInteger": level.number},
                {
                    "url": EXT_REPETITIONS_PER_SESSION,
                    "valueRange": {
                        "low": {"value": level.min_repetitions},
                        "high": {"value": level.max_repetitions},
                    },
                },
            ],
            "kind": "ServiceRequest",
            "instantiatesCanonical": [level.flexion_canonical],
            "code": _code(flexion_def, level.title),
            "status": status,
            "scheduledTiming": copy.deepcopy(level.timing),
            "description": (
                f"{(flexion_def or {}).get('title') or level.title}: {reps} repetitions per "
                f"session, {per_day} sessions a day, always followed immediately by Extension in "
                "Lying."
            ),
        },
    }
    if reason is not None:
        flexion["detail"]["statusReason"] = {
            "coding": [{"system": CAREPLAN_CS, "code": reason[0]}],
            "text": reason[1],
        }
    activities = [flexion]
    if level.extension_canonical:
        ext_def = find_definition(definitions, level.extension_canonical)
        activities.append(
            {
                "id": f"level-{level.number}-extension",
                "detail": {
                    "extension": [{"url": EXT_PROTOCOL_LEVEL, "valueInteger": level.number}],
                    "kind": "ServiceRequest",
                    "instantiatesCanonical": [level.extension_canonical],
                    "code": _code(ext_def, "Extension in Lying"),
                    "status": status,
                    "scheduledTiming": copy.deepcopy(level.timing),
                    "description": "Extension in Lying (the Cobra), immediately after every "
                    "flexion session.",
                },
            }
        )
    return activities


def activity_level(activity: Json, levels: tuple[Level, ...]) -> tuple[int, str] | None:
    """(level number, 'flexion' | 'extension') of a CarePlan activity, if it is one of ours."""
    detail = activity.get("detail") or {}
    canonicals = {_base(str(c)) for c in detail.get("instantiatesCanonical", [])}
    number = next(
        (
            e.get("valueInteger")
            for e in detail.get("extension", [])
            if e.get("url") == EXT_PROTOCOL_LEVEL
        ),
        None,
    )
    for level in levels:
        if number not in (None, level.number):
            continue
        if _base(level.flexion_canonical) in canonicals:
            return level.number, "flexion"
        if level.extension_canonical and _base(level.extension_canonical) in canonicals:
            # the Cobra is shared by every level; without a level tag it belongs to the first
            return level.number, "extension"
    return None


def set_status(activity: Json, status: str, reason: tuple[str, str] | None = None) -> Json:
    detail: dict[str, Any] = {**activity.get("detail", {}), "status": status}
    if reason is None:
        detail.pop("statusReason", None)
    else:
        detail["statusReason"] = {
            "coding": [{"system": CAREPLAN_CS, "code": reason[0]}],
            "text": reason[1],
        }
    return {**activity, "detail": detail}


_GOING = {"not-started", "scheduled", "in-progress", "on-hold"}  # activity.detail.status


def stopped_flexion(care_plan: Json, params: Params) -> int | None:
    """The index of a stopped (or cancelled) flexion activity when no flexion activity is
    still going: the plan was stopped (stop-and-refer, or a clinician cancelled it) and
    nobody has resumed it."""
    stopped = None
    for i, activity in enumerate(care_plan.get("activity", [])):
        where = activity_level(activity, params.levels)
        if where is None or where[1] != "flexion":
            continue
        status = (activity.get("detail") or {}).get("status")
        if status in _GOING:
            return None
        if status in ("stopped", "cancelled"):
            stopped = i
    return stopped
