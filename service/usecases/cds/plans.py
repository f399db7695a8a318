"""What a card says about a patient, read from this service's own records: which stored
Patient the EHR's patient is, that patient's plan on the protocol and its decision state, or
(no plan) whether the patient is eligible now. Read-only.

The decision state is the one the protocol itself carries: the latest GuidanceResponse (its
decision code, fired rules, and the ``state-*`` output parameters: hold, retry window, stop),
the CarePlan (a clinician's pause or resume), the open clinician review ServiceRequests and
the retry Task with its ``restriction.period``.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from service.fhir.dates import MAX_DT, MIN_DT
from service.protocol.activities import stopped_flexion
from service.protocol.apply import AppliedPlan
from service.protocol.codes import CAREPLAN_CS, PLAN_DEFINITION_URL
from service.protocol.fhirdata import code_in, effective_start
from service.protocol.history import PastDecision, PlanState, parse_decision
from service.protocol.inputs import PatientRecord
from service.protocol.parameters import Params, lookback_days, read_params
from service.store.repository import Tx
from service.usecases.enrolment import apply_to_record
from service.usecases.records import canonical_read, find_canonical, load_record

Json = dict[str, Any]
_LIVE_PLAN = "active,on-hold"
# Search values with these characters would need FHIR escaping; such identifiers are not
# used for matching rather than matched wrongly.
_UNSAFE_VALUE = set(",|\\$")


@dataclass(frozen=True)
class Match:
    """The Patient stored here that the EHR's patient is (None: none), or several (ambiguous:
    then nothing is shown, never another patient's plan)."""

    patient_id: str | None
    ambiguous: bool = False


@dataclass(frozen=True)
class PlanView:
    care_plan: Json
    plan_definition: Json
    params: Params
    decision: PastDecision | None  # the plan's latest live decision
    guidance_response: Json | None  # its GuidanceResponse
    reviews: tuple[Json, ...]  # open clinician review requests
    retry_task: Json | None  # the Task of the current retry window

    @property
    def state(self) -> PlanState | None:
        return self.decision.state if self.decision is not None else None

    @property
    def stopped(self) -> bool:
        """Stopped for clinician review (stop-and-refer, or cancelled) and not resumed."""
        return stopped_flexion(self.care_plan, self.params) is not None

    @property
    def paused(self) -> bool:
        """Put on hold by a clinician (CarePlan.status on-hold)."""
        return self.care_plan.get("status") == "on-hold"

    @property
    def on_hold(self) -> bool:
        state = self.state
        return state is not None and state.on_hold and not self.stopped

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """The rules and warnings of the latest decision, in the order it gave them."""
        response = self.guidance_response or {}
        codes = [code_in(c, CAREPLAN_CS) for c in response.get("reasonCode", [])]
        return tuple(c for c in codes[1:] if c)


def match_patient(tx: Tx, ehr_patient: Json, trusted_systems: frozenset[str]) -> Match:
    """The stored Patient sharing an identifier, in a trusted system, with the EHR's."""
    identifiers = [
        (str(i["system"]), str(i["value"]))
        for i in ehr_patient.get("identifier", [])
        if i.get("system") in trusted_systems
        and isinstance(i.get("value"), str)
        and not _UNSAFE_VALUE & set(i["value"])
    ]
    if not identifiers:
        return Match(None)
    found = tx.together(
        *(
            tx.find_read("Patient", [("identifier", f"{system}|{value}")], limit=2)
            for system, value in identifiers
        )
    )
    ids = {str(patient["id"]) for patients in found for patient in patients}
    if len(ids) > 1:
        return Match(None, ambiguous=True)
    return Match(next(iter(ids), None))


def own_patient(tx: Tx, patient_id: str) -> Match:
    """The EHR's FHIR server is this service: its patient id is ours."""
    found = tx.get("Patient", patient_id)
    return Match(patient_id if found is not None and not found.deleted else None)


def load_plan(tx: Tx, patient_id: str) -> PlanView | None:
    """The patient's live plan on the protocol (the most recently changed), if any."""
    patient_ref = f"Patient/{patient_id}"
    plans = tx.find(
        "CarePlan",
        [("patient", patient_ref), ("status", _LIVE_PLAN), ("_sort", "-_lastUpdated")],
        limit=20,
    )
    care_plan = next((p for p in plans if _protocol_canonical(p) is not None), None)
    if care_plan is None:
        return None
    plan_ref = f"CarePlan/{care_plan['id']}"
    definitions, decisions, reviews, tasks = tx.together(
        canonical_read(tx, "PlanDefinition", str(_protocol_canonical(care_plan))),
        tx.latest_dated_read(
            "GuidanceResponse", patient_ref, (MIN_DT, MAX_DT), ("result", plan_ref), 3
        ),
        tx.find_read("ServiceRequest", [("based-on", plan_ref), ("status", "active")], limit=50),
        tx.find_read(
            "Task",
            [
                ("based-on", plan_ref),
                ("code", f"{CAREPLAN_CS}|retry-flexion"),
                ("status", "requested"),
                ("_sort", "-authored-on"),
            ],
            limit=1,
        ),
    )
    if not definitions:
        return None  # a PlanDefinition version this server does not hold: nothing to say
    latest = next(
        (
            (decision, stored.body)
            for stored in decisions
            if stored.body is not None
            and stored.body.get("status") != "entered-in-error"
            and (decision := parse_decision(stored.body, UTC)) is not None
        ),
        (None, None),
    )
    return PlanView(
        care_plan=care_plan,
        plan_definition=definitions[0],
        params=read_params(definitions[0]),
        decision=latest[0],
        guidance_response=latest[1],
        reviews=tuple(reviews),
        retry_task=tasks[0] if tasks else None,
    )


def current_plan_definition(tx: Tx) -> Json | None:
    """The protocol's PlanDefinition a new enrolment gets (the most recently stored version)."""
    return find_canonical(tx, "PlanDefinition", PLAN_DEFINITION_URL)


def stored_eligibility(tx: Tx, patient_id: str, at: datetime) -> AppliedPlan | None:
    """$apply for a stored patient without a plan, from the records stored here."""
    plan_definition = current_plan_definition(tx)
    patient = tx.get("Patient", patient_id)
    if plan_definition is None or patient is None or patient.body is None:
        return None
    params = read_params(plan_definition)
    record = load_record(tx, patient.body, None, params, at, earlier_decisions=[])
    return apply_to_record(tx, plan_definition, record, at)


def ehr_eligibility(
    tx: Tx, ehr_patient: Json, observations: list[Json], at: datetime
) -> AppliedPlan | None:
    """$apply for a patient this service does not know, from the EHR's data: its daily pain
    scores of the look-back window and its latest screening Observation of each kind, the
    same window a stored record gets (records.load_record)."""
    plan_definition = current_plan_definition(tx)
    if plan_definition is None:
        return None
    record = PatientRecord(
        patient=ehr_patient,
        observations=tuple(_window(observations, read_params(plan_definition), at)),
    )
    return apply_to_record(tx, plan_definition, record, at)


def _window(observations: list[Json], params: Params, at: datetime) -> list[Json]:
    since = at - timedelta(days=lookback_days(params))
    kept: list[Json] = []
    latest: dict[str, tuple[datetime, Json]] = {}
    for observation in observations:
        when = _effective(observation)
        if when is None or when > at:
            continue
        code = code_in(observation.get("code"), CAREPLAN_CS)
        if code is None:
            if when >= since:
                kept.append(observation)
        elif code not in latest or when > latest[code][0]:
            latest[code] = (when, observation)
    return kept + [observation for _, observation in latest.values()]


def _effective(observation: Json) -> datetime | None:
    try:
        return effective_start(observation)
    except ValueError:
        return None


def _protocol_canonical(care_plan: Json) -> str | None:
    for canonical in care_plan.get("instantiatesCanonical", []):
        if str(canonical).partition("|")[0] == PLAN_DEFINITION_URL:
            return str(canonical)
    return None
