"""Patient features at the decision clock: phase, pain-free days, criteria A and B, red flags.

Everything is relative to the clock the caller passes; Observations after it are not seen.
A day without a daily pain score is not counted as pain-free (absence of data is not evidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from service.protocol.codes import CAREPLAN_CS, SNOMED, SNOMED_LOW_BACK_PAIN
from service.protocol.fhirdata import (
    Json,
    code_in,
    component_value,
    effective_end,
    effective_start,
    has_code,
    local_date,
    parse_datetime,
    ref_key,
    score,
)
from service.protocol.inputs import PatientRecord, live
from service.protocol.parameters import ANCHOR_COMPLETED_DAYS, Params

PHASES = ("acute", "recovering", "persistent")
RED_FLAG_SCREEN = "red-flag-screen"
EPISODE_PHASE = "episode-phase"
EXTENSION_PROGRAM = "extension-program"


@dataclass(frozen=True)
class RedFlags:
    status: str  # negative | positive | missing
    items: tuple[str, ...] = ()
    source: str | None = None


@dataclass(frozen=True)
class CriterionB:
    holds: bool
    extension_days: int | None = None
    baseline_pain: int | None = None
    current_pain: int | None = None
    drop_points: int | None = None
    drop_percent: int | None = None  # floor of the percentage, for display only
    residual_location: str | None = None


@dataclass(frozen=True)
class PatientFeatures:
    phase: str | None
    pain_free_days: int  # in the last [pain-free-lookback-days]
    criterion_a_pain_free_days: int  # in the last [criterion-a-window-days]
    criterion_a: bool
    criterion_b: CriterionB
    red_flags: RedFlags
    daily_pain_days: int  # days with any daily pain score in the criterion-A window
    input_refs: tuple[str, ...]


def _latest(observations: tuple[Json, ...], clock: datetime) -> Json | None:
    """The most recent Observation effective at or before the clock."""
    dated = [(effective_end(o, clock.tzinfo), ref_key(o) or "", o) for o in observations]
    dated = [d for d in dated if d[0] is not None and d[0] <= clock]
    return max(dated, key=lambda d: (d[0], d[1]))[2] if dated else None


def phase_of(record: PatientRecord, clock: datetime) -> tuple[str | None, str | None]:
    obs = _latest(record.index.state.get(EPISODE_PHASE, ()), clock)
    if obs is not None:
        return code_in(obs.get("valueCodeableConcept"), CAREPLAN_CS), ref_key(obs)
    for condition in sorted(live(record.conditions), key=lambda c: c.get("recordedDate", "")):
        if has_code(condition.get("code"), SNOMED, SNOMED_LOW_BACK_PAIN):
            for stage in condition.get("stage", []):
                if (phase := code_in(stage.get("summary"), CAREPLAN_CS)) in PHASES:
                    return phase, ref_key(condition)
    return None, None


def pain_by_day(pain: tuple[Json, ...], clock: datetime) -> dict[date, int]:
    """Worst daily pain score of each day."""
    worst: dict[date, int] = {}
    for obs in pain:
        when, value = effective_end(obs, clock.tzinfo), score(obs)
        if when is None or value is None or when > clock:
            continue
        day = local_date(when, clock.tzinfo)
        worst[day] = max(value, worst.get(day, value))
    return worst


def window(by_day: dict[date, int], today: date, days: int, params: Params) -> set[date]:
    """The look-back of [days] days at the decision day, by [lookback-anchor]: ending today
    (`including-today`, 1.0.0), or the days before today plus today once it has a daily score
    (`completed-days`, 1.1.0 C2: today usually has no score yet)."""
    if params.lookback_anchor == ANCHOR_COMPLETED_DAYS:
        before = {today - timedelta(days=n) for n in range(1, days + 1)}
        return before | ({today} if today in by_day else set())
    return {today - timedelta(days=n) for n in range(days)}


def pain_free_in(by_day: dict[date, int], clock: datetime, days: int, params: Params) -> int:
    days_in = window(by_day, local_date(clock, clock.tzinfo), days, params)
    return sum(1 for day, worst in by_day.items() if day in days_in and worst == 0)


def extension_days(begun: date, today: date, by_day: dict[date, int], params: Params) -> int:
    """Days on extension exercises: the days from its start to yesterday, and under
    `completed-days` today too once it has a daily score (the same anchor as every look-back)."""
    completed = (today - begun).days
    scored_today = params.lookback_anchor == ANCHOR_COMPLETED_DAYS and today in by_day
    return completed + 1 if scored_today else completed


def red_flags_of(record: PatientRecord, params: Params, clock: datetime) -> RedFlags:
    oldest = clock - timedelta(days=params.red_flag_lookback_days)
    screens: list[tuple[datetime, str, RedFlags]] = []
    obs = _latest(record.index.state.get(RED_FLAG_SCREEN, ()), clock)
    if obs is not None and (when := effective_end(obs, clock.tzinfo)) and when >= oldest:
        positive = obs.get("valueBoolean") is True
        items = tuple(
            sorted(
                code
                for comp in obs.get("component", [])
                if comp.get("valueBoolean") is True
                and (code := code_in(comp.get("code"), CAREPLAN_CS))
            )
        )
        screens.append(
            (
                when,
                ref_key(obs) or "",
                RedFlags("positive" if positive or items else "negative", items, ref_key(obs)),
            )
        )
    for qr in live(record.questionnaire_responses):
        if "red-flag" not in str(qr.get("questionnaire", "")):
            continue
        when = parse_datetime(qr.get("authored"), clock.tzinfo)
        if when is None or not oldest <= when <= clock:
            continue
        items = tuple(sorted(_true_answers(qr.get("item", []))))
        screens.append(
            (
                when,
                ref_key(qr) or "",
                RedFlags("positive" if items else "negative", items, ref_key(qr)),
            )
        )
    if not screens:
        return RedFlags("missing")
    return max(screens, key=lambda s: (s[0], s[1]))[2]


def _true_answers(items: list[Json]) -> list[str]:
    found: list[str] = []
    for item in items:
        if any(a.get("valueBoolean") is True for a in item.get("answer", [])):
            found.append(str(item.get("linkId")))
        found.extend(_true_answers(item.get("item", [])))
    return found


def criterion_b_of(
    record: PatientRecord, by_day: dict[date, int], params: Params, clock: datetime
) -> tuple[CriterionB, str | None]:
    program = _latest(record.index.state.get(EXTENSION_PROGRAM, ()), clock)
    if program is None:
        return CriterionB(False), None
    begun = effective_start(program, clock.tzinfo)
    today = local_date(clock, clock.tzinfo)
    days = extension_days(local_date(begun, clock.tzinfo), today, by_day, params) if begun else None
    baseline = component_value(program, "baseline-pain", "valueInteger")
    current = component_value(program, "current-pain", "valueInteger")
    if current is None and by_day:
        current = by_day[max(by_day)]
    location = code_in(
        component_value(program, "residual-pain-location", "valueCodeableConcept"), CAREPLAN_CS
    )
    if days is None or baseline is None or current is None:
        return CriterionB(False, days, baseline, current, residual_location=location), ref_key(
            program
        )
    drop = baseline - current
    percent = drop * 100 // baseline if baseline > 0 else 0
    holds = (
        days >= params.criterion_b_min_extension_days
        and drop >= params.criterion_b_min_drop_points
        # integer comparison so 30 % is exact: drop / baseline >= p / 100
        and drop * 100 >= params.criterion_b_min_drop_percent * baseline
        # SRC "still experience a small amount of pain at the centre of your back": some pain,
        # at the centre. No pain left is criterion A's case (C3, every version).
        and 1 <= current <= params.criterion_b_max_residual_pain
        and location == "central"
    )
    return CriterionB(holds, days, baseline, current, drop, percent, location), ref_key(program)


def patient_features(record: PatientRecord, params: Params, clock: datetime) -> PatientFeatures:
    phase, phase_ref = phase_of(record, clock)
    by_day = pain_by_day(record.index.daily_pain, clock)
    a_days = pain_free_in(by_day, clock, params.criterion_a_window_days, params)
    today = local_date(clock, clock.tzinfo)
    recorded = len(window(by_day, today, params.criterion_a_window_days, params) & set(by_day))
    crit_b, program_ref = criterion_b_of(record, by_day, params, clock)
    flags = red_flags_of(record, params, clock)
    refs = sorted({r for r in (phase_ref, program_ref, flags.source) if r})
    return PatientFeatures(
        phase=phase,
        pain_free_days=pain_free_in(by_day, clock, params.pain_free_lookback_days, params),
        criterion_a_pain_free_days=a_days,
        criterion_a=phase is not None
        and phase != "acute"
        and a_days >= params.criterion_a_min_pain_free_days,
        criterion_b=crit_b,
        red_flags=flags,
        daily_pain_days=recorded,
        input_refs=tuple(refs),
    )
