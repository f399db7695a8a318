"""Clinical plausibility of a submitted session, before anything is stored (pure, no I/O).

Each problem names the element (a FHIRPath-like expression) so an EHR integrator can fix the
message; any problem refuses the whole session with 422.
"""

from datetime import datetime

from service.protocol.codes import LOINC, LOINC_PAIN_NRS, PAIN_UNIT, REPETITION_INDEX, UCUM
from service.protocol.conformance import Problem
from service.protocol.fhirdata import Json, component_value, effective_end, effective_start
from service.protocol.inputs import Session

PAIN_MIN, PAIN_MAX = 0, 10  # the scale itself (NRS 0-10), not a clinical threshold
DECIDABLE_STATUSES = {"final", "amended", "corrected"}  # Observation.status of a session to decide


def check_pain_observation(observation: Json, where: str) -> list[Problem]:
    """A LOINC 72514-3 score must be an integer 0-10 in UCUM {score}."""
    problems: list[Problem] = []
    codings = (observation.get("code") or {}).get("coding") or []
    if not any(c.get("system") == LOINC and c.get("code") == LOINC_PAIN_NRS for c in codings):
        problems.append(
            Problem(f"{where}.code", f"a repetition must be coded LOINC {LOINC_PAIN_NRS}")
        )
    quantity = observation.get("valueQuantity")
    if observation.get("status") in ("entered-in-error", "cancelled"):
        return problems
    if not isinstance(quantity, dict) or "value" not in quantity:
        if "dataAbsentReason" not in observation:
            problems.append(Problem(f"{where}.valueQuantity", "the pain score is missing"))
        return problems
    if "comparator" in quantity:
        problems.append(
            Problem(f"{where}.valueQuantity.comparator", "a pain score is exact: no comparator")
        )
    value = quantity["value"]
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        problems.append(Problem(f"{where}.valueQuantity.value", "pain must be a whole number"))
    elif not PAIN_MIN <= value <= PAIN_MAX:
        problems.append(Problem(f"{where}.valueQuantity.value", f"pain {value} is outside 0-10"))
    unit_code = quantity.get("code")
    if unit_code is not None and (quantity.get("system") != UCUM or unit_code != PAIN_UNIT):
        system = quantity.get("system")
        given = f"{unit_code!r} of {system}" if system else f"{unit_code!r} without a system"
        problems.append(
            Problem(f"{where}.valueQuantity", f"the unit must be UCUM {PAIN_UNIT}, not {given}")
        )
    elif unit_code is None and quantity.get("unit") not in (None, PAIN_UNIT, "score"):
        problems.append(Problem(f"{where}.valueQuantity.unit", f"the unit must be {PAIN_UNIT}"))
    return problems


def _ref(value: Json | None) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


def check_session(session: Session, care_plan: Json, now: datetime) -> list[Problem]:
    """Everything that makes a session unusable for a decision on this CarePlan."""
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
