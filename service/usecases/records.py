"""Read what the clinical core needs from the store: a bounded window of the patient's record.

The window is the PlanDefinition's widest look-back before the decision clock (nothing after
it, so a replay sees what the original decision saw), plus the latest patient-state
Observations and the plan's latest decision whatever their age. Two reads are narrower, so a
patient with four sessions a day costs what a new patient costs:
- decisions: the latest few, since each carries the plan state after it (history.py); only
  decisions written before that are read for the whole window and folded;
- session panels: those of the decision day (the only use is counting the day's sessions).
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from service.fhir.dates import format_instant
from service.fhir.errors import fhir_error
from service.protocol.codes import CAREPLAN_CS, PLAN_DEFINITION_URL, SESSION_CODE
from service.protocol.fhirdata import code_in
from service.protocol.history import carries_state
from service.protocol.inputs import PatientRecord
from service.protocol.parameters import Params, lookback_days
from service.store.repository import Read, Stored, Tx

Json = dict[str, Any]
_DOTTED = re.compile(r"\d{1,9}(\.\d{1,9})*")
_STATE_CODES = ("episode-phase", "extension-program", "red-flag-screen")


def naive_utc(moment: datetime) -> datetime:
    """How the date index holds instants."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def find_canonical(tx: Tx, resource_type: str, canonical: str) -> Json | None:
    """The stored resource a canonical `url` or `url|version` names (without a version: the
    most recently stored one)."""
    found = tx.run_read(canonical_read(tx, resource_type, canonical))
    return found[0] if found else None


def newest_version(tx: Tx, resource_type: str, url: str) -> Json | None:
    """The stored resource with this canonical url and the highest version: dotted numbers
    compare as numbers (1.10.0 after 1.9.0) and come after any other version text; among
    equals, the most recently stored."""
    found = tx.find(resource_type, [("url", url), ("_sort", "-_lastUpdated")])

    def key(resource: Json) -> tuple[bool, tuple[int, ...]]:
        version = str(resource.get("version", ""))
        numeric = bool(_DOTTED.fullmatch(version))
        return numeric, tuple(int(p) for p in version.split(".")) if numeric else ()

    # max keeps the first of equals, and the search lists the most recent first
    return max(found, key=key) if found else None


def canonical_read(tx: Tx, resource_type: str, canonical: str) -> Read[list[Json]]:
    """`find_canonical` as a Read (the match is its first item, if any)."""
    url, _, version = canonical.partition("|")
    items = [("url", url)] + ([("version", version)] if version else [])
    return tx.find_read(resource_type, [*items, ("_sort", "-_lastUpdated")], limit=1)


def plan_definition_for(tx: Tx, care_plan: Json) -> Json:
    """The exact PlanDefinition version a CarePlan instantiates; 422 if it is not ours."""
    canonical = protocol_canonical(care_plan)
    return known_plan_definition(
        tx.run_read(canonical_read(tx, "PlanDefinition", canonical)), canonical
    )


def protocol_canonical(care_plan: Json) -> str:
    """The canonical of this protocol's PlanDefinition the CarePlan instantiates; 422 if none."""
    for canonical in care_plan.get("instantiatesCanonical", []):
        if canonical.partition("|")[0] == PLAN_DEFINITION_URL:
            return str(canonical)
    raise fhir_error(
        422,
        "business-rule",
        f"CarePlan/{care_plan.get('id')} does not instantiate {PLAN_DEFINITION_URL}",
        "CarePlan.instantiatesCanonical",
    )


def known_plan_definition(found: list[Json], canonical: str) -> Json:
    """What `canonical_read` found for a CarePlan's PlanDefinition; 422 if nothing."""
    if not found:
        raise fhir_error(
            422,
            "processing",
            f"PlanDefinition {canonical} is not known to this server",
            "CarePlan.instantiatesCanonical",
        )
    return found[0]


def load_record(
    tx: Tx,
    patient: Json,
    care_plan: Json | None,
    params: Params,
    at: datetime,
    earlier_decisions: list[Json] | None = None,
) -> PatientRecord:
    """The patient's record as of `at`, as far back as the PlanDefinition's `params` look.
    `earlier_decisions` overrides the stored ones (replay)."""
    return _load(tx, patient, care_plan, params, at, earlier_decisions, [])[0]


def load_record_and(
    tx: Tx, patient: Json, care_plan: Json, params: Params, at: datetime, *also: Read[Any]
) -> tuple[PatientRecord, list[Any]]:
    """`load_record`, and what the independent reads `also` find, in the same round trip."""
    return _load(tx, patient, care_plan, params, at, None, list(also))


def _load(
    tx: Tx,
    patient: Json,
    care_plan: Json | None,
    params: Params,
    at: datetime,
    earlier_decisions: list[Json] | None,
    also: list[Read[Any]],
) -> tuple[PatientRecord, list[Any]]:
    patient_ref = f"Patient/{patient['id']}"
    days = lookback_days(params)
    start = at - timedelta(days=days)
    since, until = format_instant(start), format_instant(at)
    window = (naive_utc(start), naive_utc(at))
    # The day's session panels: the session's own local day starts less than a day before
    # its clock.
    day_start = format_instant(at - timedelta(days=1))
    # State is asserted rarely (a phase, a programme start, a screen), so one query for all
    # of it is small; the latest of each code counts whatever its age.
    state_codes = ",".join(f"{CAREPLAN_CS}|{code}" for code in _STATE_CODES)
    reads: list[Read[Any]] = [
        # Past sessions are read back through the decisions that used them, not one by one:
        # their panels and repetitions have no non-session-date (search_params.py).
        tx.compartment_window_read("Observation", patient_ref, window, "non-session-date"),
        tx.find_read(
            "Observation",
            [
                ("patient", patient_ref),
                ("code", f"{CAREPLAN_CS}|{SESSION_CODE}"),
                ("date", f"ge{day_start}"),
                ("date", f"le{until}"),
            ],
        ),
        tx.find_read(
            "Observation",
            [
                ("patient", patient_ref),
                ("code", state_codes),
                ("date", f"le{until}"),
                ("_sort", "-date"),
            ],
            limit=500,
        ),
        tx.find_read("Condition", [("patient", patient_ref)], limit=200),
        tx.find_read(
            "QuestionnaireResponse",
            [("patient", patient_ref), ("authored", f"ge{since}"), ("authored", f"le{until}")],
            limit=200,
        ),
    ]
    decisions_scope = _decisions_scope(care_plan, patient_ref, at, days)
    if earlier_decisions is None and decisions_scope is not None:
        reads.append(tx.latest_dated_read("GuidanceResponse", *decisions_scope, 3))
    # One round trip for all of them on PostgreSQL.
    found = tx.together(*reads, *also)
    observations, panels, state, conditions, responses, *latest = found[: len(reads)]
    seen = {o["id"] for o in observations}
    observations += panels
    seen |= {o["id"] for o in panels}
    latest_state: dict[str, Json] = {}
    for observation in state:  # newest first
        code = code_in(observation.get("code"), CAREPLAN_CS)
        if code is not None:
            latest_state.setdefault(code, observation)
    observations.extend(o for o in latest_state.values() if o["id"] not in seen)
    if earlier_decisions is None:
        earlier_decisions = (
            _stored_decisions(tx, decisions_scope, latest[0], at)
            if decisions_scope is not None
            else []
        )
    record = PatientRecord(
        patient=patient,
        care_plan=care_plan,
        observations=tuple(observations),
        conditions=tuple(conditions),
        questionnaire_responses=tuple(responses),
        earlier_decisions=tuple(earlier_decisions),
    )
    return record, found[len(reads) :]


Scope = tuple[str, tuple[datetime, datetime], tuple[str, str]]


def _decisions_scope(
    care_plan: Json | None, patient_ref: str, at: datetime, days: int
) -> Scope | None:
    """Where the plan's decisions of the window are: (patient, window, result reference)."""
    if care_plan is None or "id" not in care_plan:
        return None
    until = naive_utc(at)
    return (
        patient_ref,
        (until - timedelta(days=days), until),
        ("result", f"CarePlan/{care_plan['id']}"),
    )


def _stored_decisions(tx: Tx, scope: Scope, latest: list[Stored], at: datetime) -> list[Json]:
    """The plan's decisions a decision folds, from `latest` (the three newest by date: three,
    not one, since the core skips a decision for the very session it decides again)."""
    patient_ref, (since, until), (_, plan_ref) = scope
    # The newest decision's carried state is the plan's, unless a decision dated before it was
    # stored after it (a session that arrived late): then the window is folded in date order.
    if _carry_state(latest) and not tx.written_after("GuidanceResponse", *scope, latest[0].seq):
        return _bodies(latest)
    if latest:  # written before decisions carried their state, voided, or out of order
        window = [("date", f"ge{format_instant(since)}"), ("date", f"le{format_instant(at)}")]
        return tx.find(
            "GuidanceResponse", [("result", plan_ref), ("patient", patient_ref), *window]
        )
    # Nothing recent: the plan's last decision, however old, still carries its state.
    older = tx.run_read(
        tx.latest_dated_read(
            "GuidanceResponse", patient_ref, (datetime.min, until), ("result", plan_ref), 3
        )
    )
    return _bodies(older) if _carry_state(older) else _bodies(older)[:1]


def _bodies(stored: list[Stored]) -> list[Json]:
    return [s.body for s in stored if s.body is not None]


def _carry_state(decisions: list[Stored]) -> bool:
    """Decisions found, each carrying the plan state after it (none voided or from before)."""
    bodies = _bodies(decisions)
    return bool(decisions) and len(bodies) == len(decisions) and all(map(carries_state, bodies))
