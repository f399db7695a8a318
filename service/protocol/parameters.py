"""Read the decision-table parameters and the levels out of the PlanDefinition.

Every clinical threshold lives in the PlanDefinition so that a clinic can publish its own version
and every decision names the exact version it used. A parameter of version 1.0.0 has no default:
a missing one is a ValueError that names it, because a silent default would make a decision that
no published version describes. A parameter added later (LATER_PARAMETERS) reads, when a version
does not carry it, as the value that reproduces 1.0.0: a version published before it existed
keeps deciding exactly as it did.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, cast

import orjson

from service.protocol.codes import (
    EXT_DECISION_PARAMETER,
    EXT_PROTOCOL_LEVEL,
    EXT_REPETITIONS_PER_SESSION,
)


@dataclass(frozen=True)
class Level:
    """One protocol level (a root action of the PlanDefinition)."""

    number: int
    action_id: str
    title: str
    flexion_canonical: str
    extension_canonical: str | None
    min_repetitions: int
    max_repetitions: int
    sessions_min_per_day: int
    sessions_max_per_day: int
    timing: dict[str, Any]


@dataclass(frozen=True)
class Params:
    """The decision-table parameters; field names are the parameter names with '_' for '-'."""

    plan_url: str
    plan_version: str
    plan_id: str | None
    min_repetitions_scored: int
    rising_min_repetitions: int
    rising_min_increase: int
    rising_max_step_down: int
    wearing_off_max_step_up: int
    severe_pain_threshold: int
    retry_min_days: int
    retry_max_days: int
    repeat_holdback_window_days: int
    not_eligible_recheck_days: int
    progress_consecutive_days: int
    progress_max_last_pain: int
    red_flag_lookback_days: int
    pain_free_lookback_days: int
    criterion_a_window_days: int
    criterion_a_min_pain_free_days: int
    criterion_b_min_extension_days: int
    criterion_b_min_drop_percent: int
    criterion_b_min_drop_points: int
    criterion_b_max_residual_pain: int
    rising_rule: str
    lookback_anchor: str
    progress_min_sessions_per_day: int
    stopped_plan_sessions: str
    cobra_missed_review_after: int
    session_before_start: str
    levels: tuple[Level, ...]
    # Every rule id the version's parameters name: a rule that only documents a case (R9b, W5)
    # is reported by the versions that name it, so an older version's decisions stay as stored.
    named_rules: frozenset[str] = frozenset()

    @property
    def plan_canonical(self) -> str:
        return f"{self.plan_url}|{self.plan_version}"

    def level(self, number: int) -> Level:
        for level in self.levels:
            if level.number == number:
                return level
        raise ValueError(f"PlanDefinition has no level {number}")

    @property
    def top_level(self) -> int:
        return max(level.number for level in self.levels)


# Values of the parameters that choose a reading rather than a number.
RISING_NO_LARGE_DIP, RISING_MAJORITY_UP = "no-large-dip", "majority-up"
ANCHOR_INCLUDING_TODAY, ANCHOR_COMPLETED_DAYS = "including-today", "completed-days"
STOPPED_REFUSE, STOPPED_STORE_AND_ANSWER = "refuse", "store-and-answer"
BEFORE_START_DECIDE, BEFORE_START_CHECK = "decide", "check-eligibility"

# Parameters added after version 1.0.0, each with the value that reproduces 1.0.0.
LATER_PARAMETERS: dict[str, int | str] = {
    "rising-rule": RISING_NO_LARGE_DIP,
    "lookback-anchor": ANCHOR_INCLUDING_TODAY,
    "progress-min-sessions-per-day": 1,
    "stopped-plan-sessions": STOPPED_REFUSE,
    "cobra-missed-review-after": 0,
    "session-before-start": BEFORE_START_DECIDE,
}
# The values a code-valued parameter may take.
CODE_VALUES: dict[str, tuple[str, ...]] = {
    "rising-rule": (RISING_NO_LARGE_DIP, RISING_MAJORITY_UP),
    "lookback-anchor": (ANCHOR_INCLUDING_TODAY, ANCHOR_COMPLETED_DAYS),
    "stopped-plan-sessions": (STOPPED_REFUSE, STOPPED_STORE_AND_ANSWER),
    "session-before-start": (BEFORE_START_DECIDE, BEFORE_START_CHECK),
}

# Fields that are not decision-table parameters read from the extension.
_NON_PARAMETER_FIELDS = {"plan_url", "plan_version", "plan_id", "levels", "named_rules"}
ALL_PARAMETER_NAMES: tuple[str, ...] = tuple(
    f.name.replace("_", "-") for f in fields(Params) if f.name not in _NON_PARAMETER_FIELDS
)
# The parameters every version must carry (those of 1.0.0).
PARAMETER_NAMES: tuple[str, ...] = tuple(
    name for name in ALL_PARAMETER_NAMES if name not in LATER_PARAMETERS
)


def _sub(ext: dict[str, Any], url: str) -> dict[str, Any] | None:
    for sub in ext.get("extension", []):
        if sub.get("url") == url:
            return cast(dict[str, Any], sub)
    return None


def _parameter_value(name: str, ext: dict[str, Any]) -> int | str:
    value_ext = _sub(ext, "value") or {}
    if name in CODE_VALUES:
        code = value_ext.get("valueCode")
        if code not in CODE_VALUES[name]:
            allowed = " or ".join(CODE_VALUES[name])
            raise ValueError(f"decision parameter {name} needs a valueCode {allowed}")
        return str(code)
    value = value_ext.get("valueInteger")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"decision parameter {name} has no valueInteger")
    return value


def _read_parameter_extensions(
    plan: dict[str, Any],
) -> tuple[dict[str, int | str], frozenset[str]]:
    values: dict[str, int | str] = {}
    rules: set[str] = set()
    for ext in plan.get("extension", []):
        if ext.get("url") != EXT_DECISION_PARAMETER:
            continue
        name = (_sub(ext, "name") or {}).get("valueCode")
        if name is None:
            raise ValueError("decision-parameter extension without a name")
        values[name] = _parameter_value(name, ext)
        rules |= {
            str(sub.get("valueCode"))
            for sub in ext.get("extension", [])
            if sub.get("url") == "rule" and sub.get("valueCode")
        }
    return values, frozenset(rules)


def _ext_value(element: dict[str, Any], url: str, key: str) -> Any:
    for ext in element.get("extension", []):
        if ext.get("url") == url:
            return ext.get(key)
    return None


def _read_level(action: dict[str, Any]) -> Level:
    number = _ext_value(action, EXT_PROTOCOL_LEVEL, "valueInteger")
    action_id = action.get("id", "")
    if not isinstance(number, int):
        raise ValueError(f"level action {action_id!r} has no protocol-level")
    children = {child.get("id"): child for child in action.get("action", [])}
    flexion = children.get(f"level-{number}-flexion")
    if flexion is None:
        raise ValueError(f"level action {action_id!r} has no level-{number}-flexion")
    extension = children.get(f"level-{number}-extension")
    reps = _ext_value(flexion, EXT_REPETITIONS_PER_SESSION, "valueRange") or _ext_value(
        action, EXT_REPETITIONS_PER_SESSION, "valueRange"
    )
    if not reps:
        raise ValueError(f"level-{number}-flexion has no repetitions-per-session")
    repeat = (action.get("timingTiming") or {}).get("repeat") or {}
    if "frequency" not in repeat:
        raise ValueError(f"level action {action_id!r} has no timingTiming.repeat.frequency")
    return Level(
        number=number,
        action_id=action_id,
        title=action.get("title") or flexion.get("title") or action_id,
        flexion_canonical=flexion.get("definitionCanonical", ""),
        extension_canonical=(extension or {}).get("definitionCanonical"),
        min_repetitions=int(reps["low"]["value"]),
        max_repetitions=int(reps["high"]["value"]),
        sessions_min_per_day=int(repeat["frequency"]),
        sessions_max_per_day=int(repeat.get("frequencyMax", repeat["frequency"])),
        timing=action["timingTiming"],
    )


def read_params(plan_definition: dict[str, Any]) -> Params:
    """Read every decision-table parameter and level; raise ValueError naming what is missing.

    Keyed on the whole content, so the same PlanDefinition is read once, not three times per
    decision (window, rules, outputs). Params is frozen; its timing dicts are shared between
    calls, so whoever puts one into a resource copies it (activities.py).
    """
    return _read_params_cached(orjson.dumps(plan_definition, option=orjson.OPT_SORT_KEYS))


@lru_cache(maxsize=32)
def _read_params_cached(content: bytes) -> Params:
    return _read_params(orjson.loads(content))


def _read_params(plan_definition: dict[str, Any]) -> Params:
    if plan_definition.get("resourceType") != "PlanDefinition":
        raise ValueError("not a PlanDefinition")
    url, version = plan_definition.get("url"), plan_definition.get("version")
    if not url or not version:
        raise ValueError("PlanDefinition needs url and version (decisions name url|version)")
    values, named_rules = _read_parameter_extensions(plan_definition)
    values = {**LATER_PARAMETERS, **values}
    missing = [name for name in PARAMETER_NAMES if name not in values]
    if missing:
        raise ValueError(f"PlanDefinition is missing decision parameter(s): {', '.join(missing)}")
    levels = tuple(
        sorted(
            (
                _read_level(action)
                for action in plan_definition.get("action", [])
                if _ext_value(action, EXT_PROTOCOL_LEVEL, "valueInteger") is not None
            ),
            key=lambda level: level.number,
        )
    )
    if not levels or levels[0].number != 1:
        raise ValueError("PlanDefinition has no level-1 action")
    kwargs = {name.replace("-", "_"): values[name] for name in ALL_PARAMETER_NAMES}
    return Params(
        plan_url=url,
        plan_version=version,
        plan_id=plan_definition.get("id"),
        levels=levels,
        named_rules=named_rules,
        **kwargs,  # type: ignore[arg-type]
    )


def lookback_days(params: Params) -> int:
    """The widest window (days before the decision clock) any rule reads.

    The storage layer fetches only this window of Observations and GuidanceResponses, plus the
    latest patient-state Observation of each kind and the plan's latest decision whatever their
    age (see inputs.py), so decision time does not grow with the stored history.
    """
    return max(
        params.red_flag_lookback_days,
        params.pain_free_lookback_days,
        params.criterion_a_window_days,
        params.repeat_holdback_window_days,
        params.retry_max_days,
        params.progress_consecutive_days,
        # W3 counts the sessions of the decision day.
        1,
    )
