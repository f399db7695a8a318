"""Clinical plausibility of a submitted session, before anything is stored (pure, no I/O).

Each problem names the element (a FHIRPath-like expression) so an EHR integrator can fix the
message; any problem refuses the whole session with 422.
"""

from datetime import datetime

from service.protocol.codes import LOINC, LOINC_PAIN_NRS, PAIN_UNIT, REPETITION_INDEX, UCUM
from service.protocol.conformance import Problem
from service.protocol.fhirdata import Json, component_value, effective_end, effective_start
from service.protocol.inputs import Session
from service.protocol.plan_start import PlanStart, before_plan_start

PAIN_MIN, PAIN_MAX = 0, 10  # the scale itself (NRS 0-10), not a clinical threshold
DECIDABLE_STATUSES = {"final", "amended", "corrected"}  # Observation.status of a session to decide


# How a usable pain score is sent, said in every refusal of one.
PAIN_FORMS = f"valueInteger 0-10, or valueQuantity 0-10 in UCUM {PAIN_UNIT}"


def check_pain_observation(observation: Json, where: str) -> list[Problem]:
    """A LOINC 72514-3 score must be a whole number 0-10: a valueInteger, or a valueQuantity
    in UCUM {score}. Each refusal says which element was wrong and what would do."""
    problems: list[Problem] = []
    codings = (observation.get("code") or {}).get("coding") or []
    if not any(c.get("system") == LOINC and c.get("code") == LOINC_PAIN_NRS for c in codings):
        problems.append(
            Problem(f"{where}.code", f"a repetition must be coded LOINC {LOINC_PAIN_NRS}")
        )
    if observation.get("status") in ("entered-in-error", "cancelled"):
        return problems
    if "valueInteger" in observation:
        problems.extend(_check_value(observation["valueInteger"], f"{where}.valueInteger"))
        return problems
    quantity = observation.get("valueQuantity")
    if quantity is None:
        other = sorted(k for k in observation if k.startswith("value"))
        if other:
            problems.append(
                Problem(f"{where}.{other[0]}", f"a pain score is a {PAIN_FORMS}, not {other[0]}")
            )
        elif "dataAbsentReason" not in observation:
            problems.append(
                Problem(f"{where}.value[x]", f"the pain score is missing: send a {PAIN_FORMS}")
            )
        return problems
    if not isinstance(quantity, dict) or "value" not in quantity:
        if "dataAbsentReason" not in observation:
            problems.append(
                Problem(
                    f"{where}.valueQuantity.value",
                    f"the pain score is missing: send a {PAIN_FORMS}",
                )
            )
        return problems
    if "comparator" in quantity:
        problems.append(
            Problem(f"{where}.valueQuantity.comparator", "a pain score is exact: no comparator")
        )
    unit = _unit_problem(quantity, where)
    # A value in another unit is on another scale: the unit is what is wrong, not the number.
    if unit is not None:
        problems.append(unit)
    else:
        problems.extend(_check_value(quantity["value"], f"{where}.valueQuantity.value"))
    return problems


def _unit_problem(quantity: Json, where: str) -> Problem | None:
    """A {score} quantity's unit: UCUM {score}, or a bare unit text "{score}" / "score"."""
    unit_code = quantity.get("code")
    if unit_code is not None and (quantity.get("system") != UCUM or unit_code != PAIN_UNIT):
        system = quantity.get("system")
        given = f"{unit_code!r} of {system}" if system else f"{unit_code!r} without a system"
        return Problem(
            f"{where}.valueQuantity",
            f"the unit must be UCUM {PAIN_UNIT}, not {given} (or send a valueInteger 0-10)",
        )
    if unit_code is None and quantity.get("unit") not in (None, PAIN_UNIT, "score"):
        return Problem(
            f"{where}.valueQuantity.unit",
            f"the unit must be {PAIN_UNIT}, not {quantity.get('unit')!r} "
            "(or send a valueInteger 0-10)",
        )
    return None


def _check_value(value: object, where: str) -> list[Problem]:
    """A pain score's number: a whole number on the 0-10 scale."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return [Problem(where, "pain must be a whole number")]
    if not PAIN_MIN <= value <= PAIN_MAX:
        return [Problem(where, f"pain {value} is outside 0-10")]
    return []


def _ref(value: Json | None) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


def check_session(
    session: Session, care_plan: Json, now: datetime, plan_start: PlanStart | None = None
) -> list[Problem]:
    """Everything that makes a session unusable for a decision on this CarePlan; `start`: the
    plan's start (plan_start.py), before which nothing of the session may lie."""
    problems: list[Problem] = []
    panel = session.panel
    plan_ref = f"CarePlan/{care_plan.get('id')}"
    subject = _ref(care_plan.get("subject"))
    if not panel.get("identifier"):
        problems.append(
            Problem("panel.identifier", "the session needs an identifier so resubmission is safe")
        )
    if panel.get("status") not in DECIDABLE_STATUSES:
        problems.append(
            Problem(
                "panel.status",
                "a session is decided when final (or amended, corrected), "
                f"not {panel.get('status')!r}",
            )
        )
    based_on = [_ref(b) for b in panel.get("basedOn", [])]
    if based_on and plan_ref not in based_on:
        problems.append(
            Problem("panel.basedOn", f"the session is based on {based_on}, not {plan_ref}")
        )
    start, end = effective_start(panel), effective_end(panel)
    if start is None:
        problems.append(Problem("panel.effectivePeriod", "the session has no time"))
    elif end is not None and end < start:
        problems.append(Problem("panel.effectivePeriod", "the session ends before it starts"))
    for label, resource in [("panel", panel)] + [
        (f"repetition[{i}]", m) for i, m in enumerate(session.members)
    ]:
        if "subject" in resource and _ref(resource["subject"]) is None:
            problems.append(
                Problem(f"{label}.subject", "the subject must be a reference to the Patient")
            )
        elif subject and _ref(resource.get("subject")) not in (None, subject):
            problems.append(
                Problem(f"{label}.subject", f"the session is for another patient than {subject}")
            )
        moment = effective_end(resource)
        if moment is not None and moment > now:
            problems.append(Problem(f"{label}.effective[x]", "the time lies in the future"))
        problems.extend(
            before_plan_start(
                [(f"{label}.effective[x]", effective_start(resource))],
                plan_start,
                str(care_plan.get("id")),
            )
        )
    indexed: list[tuple[int, int, Json]] = []
    for i, member in enumerate(session.members):
        where = f"repetition[{i}]"
        problems.extend(check_pain_observation(member, where))
        index = component_value(member, REPETITION_INDEX, "valueInteger")
        if not isinstance(index, int) or isinstance(index, bool) or index < 1:
            problems.append(Problem(f"{where}.component", "each repetition needs an index >= 1"))
            continue
        indexed.append((index, i, member))
    problems.extend(_check_order(indexed))
    return problems


def _check_order(indexed: list[tuple[int, int, Json]]) -> list[Problem]:
    """Indices 1..n, each once, and times that do not run backwards as the index rises.

    The order of the Observations in the Bundle does not matter: the index orders them.
    """
    problems: list[Problem] = []
    seen: set[int] = set()
    for index, position, _ in indexed:
        if index in seen:
            problems.append(
                Problem(f"repetition[{position}].component", f"repetition {index} appears twice")
            )
        seen.add(index)
    if seen and seen != set(range(1, max(seen) + 1)):
        missing = sorted(set(range(1, max(seen) + 1)) - seen)
        problems.append(Problem("panel.hasMember", f"repetitions {missing} are missing"))
    last_time = None
    for index, position, member in sorted(indexed, key=lambda item: item[0]):
        moment = effective_start(member)
        if moment is not None and last_time is not None and moment < last_time:
            problems.append(
                Problem(
                    f"repetition[{position}].effective[x]",
                    f"repetition {index} is timed before the repetition it follows",
                )
            )
        last_time = moment or last_time
    return problems
