"""A CDS Hooks call answered: the request checked, the EHR's patient found (prefetch, else a
read of `fhirServer`), matched with a Patient stored here, and the cards made from this
service's own records. Nothing is written.

Data policy (CDS Hooks 2.0 answers 412 when it cannot get the data it needs):
- the EHR's Patient: the `patient` prefetch, else a read of `fhirServer` (or this service's
  own record when `fhirServer` is this service); neither, or the read fails: 412;
- a patient this service does not know, when a card needs their eligibility (patient-view;
  order-sign with a referral): the `painScores` and `screening` prefetch, else reads of
  `fhirServer`; a read that fails (down, timeout, an error status, a server not allowed):
  412; no `fhirServer` at all: decided with what was given (order-sign then says what is
  missing, patient-view shows nothing);
- several stored Patients sharing the EHR patient's identifiers: no card (a wrong match would
  show another patient's plan).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl

from service.fhir.errors import FhirError, fhir_error
from service.protocol import history as h
from service.protocol.apply import AppliedPlan
from service.protocol.codes import CAREPLAN_CS, SNOMED, SNOMED_EXERCISE_THERAPY
from service.protocol.fhirdata import parse_datetime
from service.store.repository import Tx
from service.store.runner import Store
from service.usecases.cds import cards
from service.usecases.cds.ehr import EhrReader, EhrUnavailable
from service.usecases.cds.plans import (
    Match,
    PlanView,
    current_plan_definition,
    ehr_eligibility,
    load_plan,
    match_patient,
    own_patient,
    stored_eligibility,
)
from service.usecases.cds.request import (
    HookCall,
    bad_request,
    parse_hook_call,
    prefetched_observations,
    refers_to_patient,
)
from service.usecases.cds.services import (
    APPOINTMENT_BOOK,
    ORDER_SIGN,
    PATIENT_KEY,
    PREFETCH_QUERIES,
    CdsService,
)

Json = dict[str, Any]
# Low back pain and the descendant supported (chronic low back pain).
LOW_BACK_PAIN = ("279039007", "278860009")
_VISIT_CODES = {
    SNOMED: {*LOW_BACK_PAIN, SNOMED_EXERCISE_THERAPY},
    CAREPLAN_CS: {"flexion-in-lying", "flexion-in-sitting"},
}
_VISIT_ELEMENTS = ("serviceCategory", "serviceType", "specialty", "appointmentType", "reasonCode")
_CLOSED_VISIT = {"cancelled", "entered-in-error", "noshow", "fulfilled"}


@dataclass(frozen=True)
class CdsContext:
    """What a call needs besides its body."""

    store: Store
    ehr: EhrReader
    own_base: str  # this service's FHIR base URL
    trusted_systems: frozenset[str]
    now: datetime


@dataclass(frozen=True)
class _Known:
    match: Match
    plan: PlanView | None = None
    eligibility: AppliedPlan | None = None
    plan_definition: Json | None = None


async def answer(ctx: CdsContext, service: CdsService, body: Any) -> Json:
    """The CDS Hooks response (``{"cards": [...]}``) to a call of ``service``."""
    call = parse_hook_call(service, body)
    handler = _HANDLERS[service.hook]
    return {"cards": await handler(ctx, call)}


# --------------------------------------------------------------------------- the hooks


async def _patient_view(ctx: CdsContext, call: HookCall) -> list[Json]:
    known = await _resolve(ctx, call, eligibility=True)
    if known.plan is not None:
        return [cards.plan_card(known.plan, _uuid(call, "plan"))]
    applied, plan_definition = known.eligibility, known.plan_definition
    if applied is None or plan_definition is None or applied.decision.code != h.START:
        # Not eligible: no card. patient-view fires on every chart opened, and a card for
        # every patient without a back-pain episode would teach clinicians to ignore ours.
        return []
    return [cards.enrolment_card(applied, plan_definition, call.patient_ref, _uuid(call, "enrol"))]


async def _order_sign(ctx: CdsContext, call: HookCall) -> list[Json]:
    if not _referrals(call.context["draftOrders"]):
        return []
    known = await _resolve(ctx, call, eligibility=True)
    if known.plan is not None:
        return [cards.plan_card(known.plan, _uuid(call, "plan"))]
    applied, plan_definition = known.eligibility, known.plan_definition
    if applied is None or plan_definition is None:
        return []
    if applied.decision.code == h.START:
        uuid_ = _uuid(call, "enrol")
        return [cards.enrolment_card(applied, plan_definition, call.patient_ref, uuid_)]
    return [cards.not_yet_card(applied.decision, plan_definition, _uuid(call, "not-yet"))]


async def _appointment_book(ctx: CdsContext, call: HookCall) -> list[Json]:
    visits = _flexion_visits(call.context["appointments"], call.patient_id)
    if not visits:
        return []
    known = await _resolve(ctx, call, eligibility=False)
    plan = known.plan
    if plan is None:
        return []
    found = []
    for index, visit in visits:
        allowed, better = _visit_allowed(plan, visit)
        if not allowed:
            key = f"visit-{visit.get('id') or index}"
            found.append(cards.visit_card(plan, visit, better, _uuid(call, key)))
    return found


_HANDLERS: dict[str, Callable[[CdsContext, HookCall], Awaitable[list[Json]]]] = {
    "patient-view": _patient_view,
    ORDER_SIGN: _order_sign,
    APPOINTMENT_BOOK: _appointment_book,
}


def _uuid(call: HookCall, key: str) -> str:
    return cards.card_uuid(call.hook_instance, call.service.id, key)


# --------------------------------------------------------------------------- the patient


async def _resolve(ctx: CdsContext, call: HookCall, *, eligibility: bool) -> _Known:
    """Who the patient is here, their plan, and (no plan, ``eligibility``) whether they may
    start now."""
    own = call.fhir_server is not None and call.fhir_server == ctx.own_base.rstrip("/")
    ehr_patient = call.patient
    if ehr_patient is None and not own:
        ehr_patient = await _read_patient(ctx, call)

    def stored(tx: Tx) -> _Known:
        if own:
            match = own_patient(tx, call.patient_id)
        else:
            match = match_patient(tx, ehr_patient or {}, ctx.trusted_systems)
        if match.patient_id is None:
            return _Known(match)
        plan = load_plan(tx, match.patient_id)
        if plan is not None or not eligibility:
            return _Known(match, plan)
        applied = stored_eligibility(tx, match.patient_id, ctx.now)
        return _Known(match, None, applied, current_plan_definition(tx))

    known = await ctx.store.arun(stored, read_only=True)
    if known.match.patient_id is not None or known.match.ambiguous or not eligibility:
        return known
    if ehr_patient is None:  # fhirServer is this service, and it has no such Patient
        raise _precondition(f"Patient/{call.patient_id} is not known to this server")
    observations = await _ehr_observations(ctx, call, own)

    def from_ehr(tx: Tx) -> _Known:
        applied = ehr_eligibility(tx, ehr_patient, observations, ctx.now)
        return _Known(known.match, None, applied, current_plan_definition(tx))

    return await ctx.store.arun(from_ehr, read_only=True)


async def _read_patient(ctx: CdsContext, call: HookCall) -> Json:
    if call.fhir_server is None:
        raise _precondition(
            "Neither the 'patient' prefetch nor a fhirServer to read the Patient from"
        )
    path, params = _query(PATIENT_KEY, call.patient_id)
    found = await ctx.ehr.read_all(
        call.fhir_server, call.access_token, {PATIENT_KEY: (path, params)}
    )
    patient = found[PATIENT_KEY]
    if isinstance(patient, EhrUnavailable):
        raise _precondition(f"The Patient could not be read: {patient.reason}")
    if patient.get("resourceType") != "Patient" or patient.get("id") != call.patient_id:
        raise _precondition("The Patient could not be read: the EHR answered another resource")
    return patient


async def _ehr_observations(ctx: CdsContext, call: HookCall, own: bool) -> list[Json]:
    """The EHR's pain scores and screening Observations: prefetched, else read."""
    given = [key for key, found in call.observations.items() if found is not None]
    missing = [key for key in call.observations if key not in given]
    observations = [
        o
        for key in given
        for o in prefetched_observations(call.prefetch, key, call.patient_id, validate=True) or []
    ]
    if not missing or call.fhir_server is None or own:
        return observations
    answers = await ctx.ehr.read_all(
        call.fhir_server, call.access_token, {key: _query(key, call.patient_id) for key in missing}
    )
    for key, answer in answers.items():
        if isinstance(answer, EhrUnavailable):
            raise _precondition(f"The EHR's {key} could not be read: {answer.reason}")
        try:
            found = prefetched_observations({key: answer}, key, call.patient_id, validate=True)
        except FhirError:
            raise _precondition(
                f"The EHR's {key} answer is not that patient's Observations"
            ) from None
        observations += found or []
    return observations


def _query(key: str, patient_id: str) -> tuple[str, dict[str, str]]:
    """A prefetch template as a read: its path and query parameters."""
    path, _, query = (
        PREFETCH_QUERIES[key].replace("{{context.patientId}}", patient_id).partition("?")
    )
    return path, dict(parse_qsl(query))


def _precondition(text: str) -> FhirError:
    return fhir_error(412, "processing", text)


# --------------------------------------------------------------------------- orders and visits


def _referrals(bundle: Json) -> list[Json]:
    """Draft ServiceRequests whose reason is low back pain."""
    found = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") != "ServiceRequest" or resource.get("status") != "draft":
            continue
        if any(
            coding.get("system") == SNOMED and coding.get("code") in LOW_BACK_PAIN
            for concept in resource.get("reasonCode", [])
            for coding in concept.get("coding", [])
        ):
            found.append(resource)
    return found


def _flexion_visits(bundle: Json, patient_id: str) -> list[tuple[int, Json]]:
    """(entry index, Appointment) of the proposed flexion visits; 400 for an entry that is
    not an Appointment or is another patient's."""
    visits = []
    for i, entry in enumerate(bundle.get("entry", [])):
        resource = entry.get("resource")
        where = f"context.appointments.entry[{i}].resource"
        if not isinstance(resource, dict) or resource.get("resourceType") != "Appointment":
            raise bad_request(f"{where} must be an Appointment", where)
        patients = [
            p.get("actor")
            for p in resource.get("participant", [])
            if str((p.get("actor") or {}).get("reference", "")).partition("/")[0] == "Patient"
            or "/Patient/" in str((p.get("actor") or {}).get("reference", ""))
        ]
        if patients and not any(refers_to_patient(actor, patient_id) for actor in patients):
            raise bad_request(f"{where} is another patient's appointment", f"{where}.participant")
        if resource.get("status") in _CLOSED_VISIT or not _is_flexion_visit(resource):
            continue
        visits.append((i, resource))
    return visits


def _is_flexion_visit(appointment: Json) -> bool:
    concepts: list[Json] = []
    for element in _VISIT_ELEMENTS:
        value = appointment.get(element)
        concepts += value if isinstance(value, list) else [value] if value else []
    return any(
        coding.get("code") in _VISIT_CODES.get(str(coding.get("system")), set())
        for concept in concepts
        for coding in concept.get("coding", [])
    )


def _visit_allowed(plan: PlanView, visit: Json) -> tuple[bool, Json | None]:
    """Whether the plan allows the visit; if not, the visit as it should be instead (moved
    to the day the retry window opens, or cancelled while the plan is stopped), when the
    Appointment has an id an update can name."""
    if plan.stopped or plan.paused:
        return False, {**visit, "status": "cancelled"} if visit.get("id") else None
    state = plan.state
    if not plan.on_hold or state is None or state.retry_start is None:
        return True, None
    start = _instant(visit.get("start"))
    if start is None or start.date() >= state.retry_start:
        return True, None
    return False, _moved(visit, start, state.retry_start) if visit.get("id") else None


def _moved(visit: Json, start: datetime, day: date) -> Json:
    new_start = datetime.combine(day, start.timetz())
    moved = {**visit, "start": _format(new_start)}
    end = _instant(visit.get("end"))
    if end is not None:
        moved["end"] = _format(new_start + (end - start))
    return moved


def _instant(value: Any) -> datetime | None:
    try:
        return parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _format(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
