"""Public test builders: FHIR R4 dicts for the protocol, sessions and patient state.

Reused by the HTTP-layer tests, so every builder is documented and takes plain arguments.
Times are timezone-aware datetimes; ids are deterministic from the arguments.

- `plan_definition(version, **parameter_overrides)`: a PlanDefinition in the shipped shape.
- `session(reps, end, ...)` -> `Session`; `session_bundle(...)` -> collection Bundle;
  `session_resources(...)` -> (panel, repetitions) as stored Observations with ids.
- `daily_pain(day, score)`, `red_flag_screen(at, items)`, `episode_phase(at, phase)`,
  `extension_program(start, baseline, current, location)`: patient-state Observations.
- `record(...)`: a PatientRecord with a patient and CarePlan.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from service.protocol.codes import (
    ACTIVITY_DEFINITION_BASE,
    CAREPLAN_CS,
    EXT_DECISION_PARAMETER,
    EXT_PROTOCOL_LEVEL,
    EXT_REPETITIONS_PER_SESSION,
    LOINC,
    LOINC_PAIN_NRS,
    PAIN_UNIT,
    PLAN_DEFINITION_URL,
    SESSION_IDENTIFIER_SYSTEM,
    UCUM,
)
from service.protocol.inputs import PatientRecord, Session

Json = dict[str, Any]

PATIENT_ID = "p1"
CARE_PLAN_ID = "cp1"

# The decision-table defaults, as the shipped PlanDefinition carries them.
DEFAULT_PARAMETERS: dict[str, tuple[int, str]] = {
    "min-repetitions-scored": (3, "R0"),
    "rising-min-repetitions": (3, "R4"),
    "rising-min-increase": (2, "R4"),
    "rising-max-step-down": (1, "R4"),
    "wearing-off-max-step-up": (1, "R9"),
    "severe-pain-threshold": (7, "R5"),
    "retry-min-days": (7, "R4"),
    "retry-max-days": (14, "R4"),
    "repeat-holdback-window-days": (28, "R6"),
    "not-eligible-recheck-days": (7, "R7"),
    "progress-consecutive-days": (7, "R10"),
    "progress-max-last-pain": (2, "R10"),
    "red-flag-lookback-days": (30, "R1"),
    "pain-free-lookback-days": (21, "R8"),
    "criterion-a-window-days": (14, "R8"),
    "criterion-a-min-pain-free-days": (10, "R8"),
    "criterion-b-min-extension-days": (14, "R8"),
    "criterion-b-min-drop-percent": (30, "R8"),
    "criterion-b-min-drop-points": (2, "R8"),
    "criterion-b-max-residual-pain": (3, "R8"),
}

# level -> (flexion ActivityDefinition id, repetitions low, high)
LEVELS: dict[int, tuple[str, int, int]] = {
    1: ("flexion-in-lying", 5, 6),
    2: ("flexion-in-lying-10", 10, 10),
    3: ("flexion-in-sitting", 5, 6),
}
AD_VERSION = "1.0.0"


def coding(code: str, system: str = CAREPLAN_CS) -> Json:
    return {"coding": [{"system": system, "code": code}]}


def _level_action(number: int) -> Json:
    ad, low, high = LEVELS[number]
    return {
        "id": f"level-{number}",
        "title": f"Level {number}",
        "extension": [{"url": EXT_PROTOCOL_LEVEL, "valueInteger": number}],
        "timingTiming": {
            "repeat": {"frequency": 3, "frequencyMax": 4, "period": 1, "periodUnit": "d"}
        },
        "action": [
            {
                "id": f"level-{number}-flexion",
                "title": ad,
                "definitionCanonical": f"{ACTIVITY_DEFINITION_BASE}/{ad}|{AD_VERSION}",
                "extension": [
                    {
                        "url": EXT_REPETITIONS_PER_SESSION,
                        "valueRange": {"low": {"value": low}, "high": {"value": high}},
                    }
                ],
            },
            {
                "id": f"level-{number}-extension",
                "title": "Extension in Lying",
                "definitionCanonical": f"{ACTIVITY_DEFINITION_BASE}/extension-in-lying"
                f"|{AD_VERSION}",
                "relatedAction": [
                    {
                        "actionId": f"level-{number}-flexion",
                        "relationship": "after-end",
                        "offsetDuration": {
                            "value": 0,
                            "unit": "min",
                            "system": UCUM,
                            "code": "min",
                        },
                    }
                ],
            },
        ],
    }


def plan_definition(version: str = "1.0.0", **overrides: int) -> Json:
    """The protocol PlanDefinition; `severe_pain_threshold=6` overrides one parameter."""
    values = {name: value for name, (value, _) in DEFAULT_PARAMETERS.items()}
    for key, value in overrides.items():
        name = key.replace("_", "-")
        if name not in values:
            raise KeyError(name)
        values[name] = value
    return {
        "resourceType": "PlanDefinition",
        "id": "flexion-in-lying-protocol",
        "url": PLAN_DEFINITION_URL,
        "version": version,
        "name": "FlexionInLyingProtocol",
        "status": "active",
        "extension": [
            {
                "url": EXT_DECISION_PARAMETER,
                "extension": [
                    {"url": "name", "valueCode": name},
                    {"url": "value", "valueInteger": values[name]},
                    {"url": "rule", "valueCode": rule},
                    {"url": "description", "valueString": name},
                ],
            }
            for name, (_, rule) in DEFAULT_PARAMETERS.items()
        ],
        "action": [_level_action(n) for n in sorted(LEVELS)],
    }


# The parameters version 1.1.0 added: name -> (1.1.0 value, the value that reproduces 1.0.0,
# the rules it names).
V11_PARAMETERS: dict[str, tuple[int | str, int | str, tuple[str, ...]]] = {
    "rising-rule": ("majority-up", "no-large-dip", ("R4", "R9b")),
    "lookback-anchor": ("completed-days", "including-today", ("R7", "R8")),
    "progress-min-sessions-per-day": (3, 1, ("R10",)),
    "stopped-plan-sessions": ("store-and-answer", "refuse", ("R12",)),
    "cobra-missed-review-after": (3, 0, ("W1",)),
    "session-before-start": ("check-eligibility", "decide", ("R7", "R8")),
}
# Rules 1.1.0 names on a parameter of 1.0.0 (rules that only document a case: C6, C9).
V11_NAMED_RULES: dict[str, str] = {"wearing-off-max-step-up": "R9b", "retry-max-days": "W5"}


def plan_definition_v11(version: str = "1.1.0", **overrides: int | str) -> Json:
    """The protocol at 1.1.0; `rising_rule="no-large-dip"` overrides one parameter."""
    given = {key.replace("_", "-"): value for key, value in overrides.items()}
    new = {name: given.pop(name, value) for name, (value, _, _) in V11_PARAMETERS.items()}
    pd = plan_definition(version, **{k.replace("-", "_"): int(v) for k, v in given.items()})
    for ext in pd["extension"]:
        name = ext["extension"][0]["valueCode"]
        if name in V11_NAMED_RULES:
            ext["extension"].insert(3, {"url": "rule", "valueCode": V11_NAMED_RULES[name]})
    for name, value in new.items():
        typed = {"valueCode": value} if isinstance(value, str) else {"valueInteger": value}
        pd["extension"].append(
            {
                "url": EXT_DECISION_PARAMETER,
                "extension": [
                    {"url": "name", "valueCode": name},
                    {"url": "value", **typed},
                    *({"url": "rule", "valueCode": r} for r in V11_PARAMETERS[name][2]),
                    {"url": "description", "valueString": name},
                ],
            }
        )
    return pd


def at(day: int, hour: int = 9, minute: int = 0, start: date = date(2025, 3, 3)) -> datetime:
    """Day `day` of a scenario (day 0 = 2025-03-03) at hh:mm UTC."""
    return datetime.combine(start + timedelta(days=day), time(hour, minute), tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def repetition(index: int, value: int | None, when: datetime, rid: str) -> Json:
    """One repetition Observation (72514-3 + repetition-index); value None = not scored."""
    obs: Json = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": coding(LOINC_PAIN_NRS, LOINC),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": iso(when),
        "component": [{"code": coding("repetition-index"), "valueInteger": index}],
    }
    if value is None:
        obs["dataAbsentReason"] = coding(
            "not-asked", "http://terminology.hl7.org/CodeSystem/data-absent-reason"
        )
    else:
        obs["valueQuantity"] = {"value": value, "unit": "score", "system": UCUM, "code": PAIN_UNIT}
    return obs


def session_resources(
    reps: list[int | None],
    end: datetime,
    *,
    sid: str | None = None,
    extension_followed: bool | None = True,
    supervised: bool | None = None,
    head_raised: bool | None = None,
    legs_straightened: bool | None = None,
    location_start: str | None = "central",
    location_end: str | None = "central",
    care_plan_id: str = CARE_PLAN_ID,
    minutes: int = 10,
) -> tuple[Json, list[Json]]:
    """(panel, repetitions) with ids; a component passed as None is left out (not reported)."""
    sid = sid or f"s-{end.strftime('%Y%m%dT%H%M')}"
    members = [
        repetition(
            i + 1, v, end - timedelta(minutes=minutes) + timedelta(seconds=i), f"{sid}-r{i + 1}"
        )
        for i, v in enumerate(reps)
    ]
    components: list[Json] = []
    for code, value in (
        ("extension-followed", extension_followed),
        ("supervised", supervised),
        ("head-raised", head_raised),
        ("legs-straightened", legs_straightened),
    ):
        if value is not None:
            components.append({"code": coding(code), "valueBoolean": value})
    for code, loc in (("pain-location-start", location_start), ("pain-location-end", location_end)):
        if loc is not None:
            components.append({"code": coding(code), "valueCodeableConcept": coding(loc)})
    panel: Json = {
        "resourceType": "Observation",
        "id": sid,
        "identifier": [{"system": SESSION_IDENTIFIER_SYSTEM, "value": sid}],
        "status": "final",
        "code": coding("flexion-session"),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "basedOn": [{"reference": f"CarePlan/{care_plan_id}"}],
        "effectivePeriod": {"start": iso(end - timedelta(minutes=minutes)), "end": iso(end)},
        "hasMember": [{"reference": f"Observation/{m['id']}"} for m in members],
        "component": components,
    }
    return panel, members


def session(reps: list[int | None], end: datetime, **kwargs: Any) -> Session:
    panel, members = session_resources(reps, end, **kwargs)
    return Session.from_observations(panel, members)


def session_bundle(reps: list[int | None], end: datetime, **kwargs: Any) -> Json:
    """The $submit-session body: a collection Bundle linked by urn:uuid fullUrls, no ids."""
    panel, members = session_resources(reps, end, **kwargs)
    urls = {
        f"Observation/{m['id']}": f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
        for i, m in enumerate(members)
    }
    panel = {k: v for k, v in panel.items() if k != "id"}
    panel["hasMember"] = [{"reference": urls[m["reference"]]} for m in panel["hasMember"]]
    entries = [{"fullUrl": "urn:uuid:00000000-0000-4000-8000-999999999999", "resource": panel}]
    for m in members:
        url = urls[f"Observation/{m['id']}"]
        entries.append({"fullUrl": url, "resource": {k: v for k, v in m.items() if k != "id"}})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _state(code: str, when: datetime, rid: str, **value: Any) -> Json:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": coding(code),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": iso(when),
        **value,
    }


def daily_pain(day: datetime, value: int) -> Json:
    """A daily pain score (72514-3, no repetition-index): belongs to no session."""
    return {
        "resourceType": "Observation",
        "id": f"pain-{day.strftime('%Y%m%dT%H%M')}",
        "status": "final",
        "code": coding(LOINC_PAIN_NRS, LOINC),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": iso(day),
        "valueQuantity": {"value": value, "unit": "score", "system": UCUM, "code": PAIN_UNIT},
    }


def pain_days(until: datetime, values: list[int]) -> list[Json]:
    """Daily pain for consecutive days ending the day before `until` (last value = yesterday)."""
    n = len(values)
    return [daily_pain(until - timedelta(days=n - i, hours=1), v) for i, v in enumerate(values)]


def red_flag_screen(when: datetime, items: tuple[str, ...] = (), rid: str | None = None) -> Json:
    """Screen; positive when any item is given (those items true)."""
    components = [{"code": coding(item), "valueBoolean": True} for item in items]
    # FHIR forbids empty arrays: a negative screen simply has no components.
    extra: Json = {"component": components} if components else {}
    return _state(
        "red-flag-screen",
        when,
        rid or f"rf-{when.strftime('%Y%m%dT%H%M')}",
        valueBoolean=bool(items),
        **extra,
    )


def episode_phase(when: datetime, phase: str) -> Json:
    return _state(
        "episode-phase",
        when,
        f"phase-{when.strftime('%Y%m%d')}",
        valueCodeableConcept=coding(phase),
    )


def extension_program(
    start: datetime,
    baseline: int | None = None,
    current: int | None = None,
    location: str | None = None,
) -> Json:
    comps: list[Json] = []
    if baseline is not None:
        comps.append({"code": coding("baseline-pain"), "valueInteger": baseline})
    if current is not None:
        comps.append({"code": coding("current-pain"), "valueInteger": current})
    if location is not None:
        comps.append(
            {"code": coding("residual-pain-location"), "valueCodeableConcept": coding(location)}
        )
    extra: Json = {"component": comps} if comps else {}  # FHIR forbids empty arrays
    obs = _state("extension-program", start, f"ext-{start.strftime('%Y%m%d')}", **extra)
    del obs["effectiveDateTime"]
    obs["effectivePeriod"] = {"start": iso(start)}
    return obs


def patient() -> Json:
    return {"resourceType": "Patient", "id": PATIENT_ID, "name": [{"family": "Doe"}]}


def care_plan(level_status: str = "in-progress") -> Json:
    """An enrolled CarePlan with the level-1 flexion and extension activities."""
    ad = f"{ACTIVITY_DEFINITION_BASE}/{LEVELS[1][0]}|{AD_VERSION}"
    ext = f"{ACTIVITY_DEFINITION_BASE}/extension-in-lying|{AD_VERSION}"
    return {
        "resourceType": "CarePlan",
        "id": CARE_PLAN_ID,
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "instantiatesCanonical": [f"{PLAN_DEFINITION_URL}|1.0.0"],
        "activity": [
            {
                "detail": {
                    "kind": "ServiceRequest",
                    "instantiatesCanonical": [ad],
                    "status": level_status,
                }
            },
            {
                "detail": {
                    "kind": "ServiceRequest",
                    "instantiatesCanonical": [ext],
                    "status": "in-progress",
                }
            },
        ],
    }


def eligible_state(clock: datetime) -> list[Json]:
    """Patient state that satisfies criterion A: recovering, 14 pain-free days, negative screen."""
    return [
        episode_phase(clock - timedelta(days=20), "recovering"),
        red_flag_screen(clock - timedelta(days=2)),
        *pain_days(clock, [0] * 14),
    ]


def record(
    observations: list[Json] | tuple[Json, ...] = (),
    earlier_decisions: list[Json] | tuple[Json, ...] = (),
    plan: Json | str | None = "default",
    **kwargs: Any,
) -> PatientRecord:
    return PatientRecord(
        patient=patient(),
        care_plan=care_plan() if plan == "default" else plan,  # type: ignore[arg-type]
        observations=tuple(observations),
        earlier_decisions=tuple(earlier_decisions),
        **kwargs,
    )


class Timeline:
    """A patient walked through time: each step decides, builds outputs and keeps them.

    `submit()` stores the session (panel + repetitions) and its GuidanceResponse the way the
    storage layer would, and updates the CarePlan, so the next step sees the history.
    """

    def __init__(self, plan: Json | None = None, observations: list[Json] | None = None) -> None:
        from service.protocol.parameters import read_params

        self.plan = plan or plan_definition()
        self.params = read_params(self.plan)
        self.observations: list[Json] = list(observations or [])
        self.decisions: list[Json] = []
        self.care_plan: Json = care_plan()

    def record(self) -> PatientRecord:
        return PatientRecord(
            patient=patient(),
            care_plan=self.care_plan,
            observations=tuple(self.observations),
            earlier_decisions=tuple(self.decisions),
        )

    def _keep(self, decision: Any) -> Any:
        from service.protocol.outputs import build_outputs

        outputs = build_outputs(decision, self.params, self.care_plan)
        self.decisions.append(outputs.guidance_response)
        self.care_plan = outputs.care_plan
        return outputs

    def submit(self, reps: list[int | None], end: datetime, **kwargs: Any) -> Any:
        """Decide a session; returns (Decision, DecisionOutputs)."""
        from service.protocol.decide import decide

        panel, members = session_resources(reps, end, **kwargs)
        new = Session.from_observations(panel, members)
        decision = decide(self.plan, self.record(), new, end)
        self.observations.extend([panel, *members])
        return decision, self._keep(decision)

    def evaluate(self, clock: datetime) -> Any:
        """$evaluate without a session; returns (Decision, DecisionOutputs)."""
        from service.protocol.decide import decide

        decision = decide(self.plan, self.record(), None, clock)
        return decision, self._keep(decision)
