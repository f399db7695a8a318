"""Sessions in, decisions out: the I/O around the pure clinical core, in one transaction.

submit_session: validate -> store the session -> load the record window -> decide ->
store the GuidanceResponse, the updated CarePlan and the follow-up resources -> answer.
Every output id is derived from (CarePlan, session identifier), so a resubmitted session
finds its earlier answer instead of deciding twice. Sessions written as plain Observations
reach decide_and_store through session_observations.py.
"""

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from service.auth.permissions import Need
from service.fhir.dates import MAX_DT, parse_range
from service.fhir.errors import FhirError, Issue, fhir_error
from service.fhir.ids import new_resource_id
from service.notify import outbox
from service.notify.outbox import Change
from service.observability import record_decision
from service.protocol.activities import stopped_flexion
from service.protocol.codes import CAREPLAN_CS, SESSION_CODE
from service.protocol.conformance import Problem
from service.protocol.decide import Decision, decide, decision_key, session_clock
from service.protocol.fhirdata import identifier_key
from service.protocol.history import STOP_AND_REFER, STOP_STANDS, is_evaluation, parse_decision
from service.protocol.inputs import Session, SessionShapeError
from service.protocol.outputs import DecisionOutputs, build_outputs, resource_id
from service.protocol.parameters import STOPPED_STORE_AND_ANSWER, Params, read_params
from service.protocol.plan_start import PlanStart, before_plan_start, plan_start
from service.protocol.session_checks import check_session
from service.store.repository import Read, Stored, Tx, live
from service.store.runner import Store
from service.usecases import access
from service.usecases.access import Caller
from service.usecases.audit_trail import Audit, Touched, record
from service.usecases.records import (
    canonical_read,
    known_plan_definition,
    load_record_and,
    naive_utc,
    plan_definition_for,
    protocol_canonical,
)

Json = dict[str, Any]
_STOPPED_PLAN = {"revoked", "completed", "entered-in-error"}
# Decisions read after a session's clock to tell whether it is late: evaluations among them
# are skipped, and a session arriving later than this many decisions is very rare.
_LATER_DECISIONS = 50
_OFFSET = re.compile(r"(?P<sign>[+-])(?P<h>\d{2}):(?P<m>\d{2})$")
# What $submit-session and $evaluate change (permissions.OPERATION_NEEDS): the caller must be
# allowed these on the very resources, not only on their types.
_PLAN_UPDATE = Need("CarePlan", "u")
_SESSION_CREATE = Need("Observation", "c")


def unprocessable(problems: list[Problem]) -> FhirError:
    issues = [Issue("business-rule", p.message, expression=(p.expression,)) for p in problems]
    return FhirError(422, issues)


def parameters(guidance_response: Json, care_plan: Json, created: list[Json]) -> Json:
    """The $submit-session / $evaluate answer, in a fixed order."""
    parts = [
        {"name": "decision", "resource": guidance_response},
        {"name": "carePlan", "resource": care_plan},
    ]
    parts += [{"name": "created", "resource": r} for r in created]
    return {"resourceType": "Parameters", "parameter": parts}


def _session_from(body: Json, where: str) -> Session:
    """The session in the Bundle at `where` (its path in the request body)."""
    try:
        return Session.from_bundle(body)
    except SessionShapeError as exc:
        raise fhir_error(
            422, "business-rule", f"Not a usable session: {exc}", f"{where}.{exc.expression}"
        ) from None


def _in_request(
    problems: list[Problem], bundle: Json, session: Session, where: str
) -> list[Problem]:
    """Problems of check_session ("panel.x", "repetition[1].x") with the path the element has
    in the request body ("Bundle.entry[2].resource.x"), so an integrator finds it."""
    entry_of = {id(e.get("resource")): i for i, e in enumerate(bundle.get("entry", []))}
    entries = {"panel": entry_of.get(id(session.panel))}
    entries |= {f"repetition[{k}]": entry_of.get(id(m)) for k, m in enumerate(session.members)}
    placed = []
    for problem in problems:
        head, dot, rest = problem.expression.partition(".")
        entry = entries.get(head)
        if entry is not None:
            path = f"{where}.entry[{entry}].resource{dot}{rest}"
            problem = Problem(path, problem.message)
        placed.append(problem)
    return placed


def local_references(bundle: Json, base: str | None) -> Json:
    """The Bundle with its entries' subject and basedOn references to this server (absolute,
    under `base`) in their relative form, as the rest of the service compares and indexes
    them. Another server's Patient/x stays absolute: it is not this server's Patient/x."""
    prefix = base.rstrip("/") + "/" if base else None
    if prefix is None:
        return bundle

    def local(reference: Any) -> Any:
        if isinstance(reference, dict) and str(reference.get("reference", "")).startswith(prefix):
            return {**reference, "reference": reference["reference"][len(prefix) :]}
        return reference

    entries = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource")
        if isinstance(resource, dict):
            resource = dict(resource)
            if "subject" in resource:
                resource["subject"] = local(resource["subject"])
            if isinstance(resource.get("basedOn"), list):
                resource["basedOn"] = [local(r) for r in resource["basedOn"]]
            entry = {**entry, "resource": resource}
        entries.append(entry)
    return {**bundle, "entry": entries}


def _stopped_by_decision(care_plan: Json, index: int) -> bool:
    """The flexion activity at `index` was stopped by a stop-and-refer (R1/R2), not by hand."""
    detail = care_plan["activity"][index].get("detail") or {}
    reasons = (detail.get("statusReason") or {}).get("coding", [])
    return detail.get("status") == "stopped" and any(
        c.get("system") == CAREPLAN_CS and c.get("code") == STOP_AND_REFER for c in reasons
    )


def check_plan_open(care_plan: Json, params: Params, session: bool = False) -> None:
    """422 unless the plan takes sessions: not ended, not paused by a clinician, and not
    stopped by a stop-and-refer that no clinician has resumed yet; a version that stores
    sessions on such a plan (stopped-plan-sessions store-and-answer, C5) takes them."""
    status = care_plan.get("status")
    if status in _STOPPED_PLAN or status == "on-hold":
        why = "put on hold by a clinician" if status == "on-hold" else status
        raise fhir_error(
            422,
            "business-rule",
            f"CarePlan/{care_plan['id']} is {why}: sessions are not accepted",
            "CarePlan.status",
        )
    stopped = stopped_flexion(care_plan, params)
    if (
        stopped is not None
        and session
        and params.stopped_plan_sessions == STOPPED_STORE_AND_ANSWER
        and _stopped_by_decision(care_plan, stopped)
    ):
        return
    if stopped is not None:
        raise fhir_error(
            422,
            "business-rule",
            f"CarePlan/{care_plan['id']} is stopped (its flexion activity is "
            f"{care_plan['activity'][stopped]['detail']['status']}): sessions are not accepted "
            "until a clinician resumes it (sets the flexion activity back to in-progress)",
            f"CarePlan.activity[{stopped}].detail.status",
        )


def plan_started(tx: Tx, care_plan: Stored) -> PlanStart | None:
    """The plan's start (protocol/plan_start.py): its period.start, else when it was first
    stored, read from its history only then (a plan still at version 1 carries it)."""
    body = care_plan.body or {}
    if (body.get("period") or {}).get("start"):
        return plan_start(body, None)
    first = (
        care_plan.last_updated
        if care_plan.version == 1
        else tx.first_stored(care_plan.type, care_plan.id)
    )
    if first is None:
        return plan_start(body, None)
    # As its meta.lastUpdated shows it (milliseconds), so a client can time a session by it.
    shown = first.replace(microsecond=first.microsecond // 1000 * 1000, tzinfo=UTC)
    return plan_start(body, shown)


def _store_session(
    tx: Tx, session: Session, care_plan: Json, caller: Caller
) -> tuple[Session, list[str]]:
    """Store the repetitions and the panel pointing at them; returns the stored session."""
    plan_ref = {"reference": f"CarePlan/{care_plan['id']}"}
    subject = care_plan.get("subject")
    members: list[Json] = []
    for member in session.members:
        body = {k: v for k, v in member.items() if k != "id"}
        body.setdefault("subject", subject)
        body.setdefault("basedOn", [plan_ref])
        members.append({**body, "id": new_resource_id()})
    panel = {k: v for k, v in session.panel.items() if k != "id"}
    panel["hasMember"] = [{"reference": f"Observation/{m['id']}"} for m in members]
    panel.setdefault("subject", subject)
    panel.setdefault("basedOn", [plan_ref])
    panel["id"] = new_resource_id()
    for body in [*members, panel]:
        access.check_writable(caller, _SESSION_CREATE, body)
    stored = [s.body or {} for s in tx.create_many([(r, r["id"]) for r in [*members, panel]])]
    stored_panel, stored_members = stored[-1], stored[:-1]
    refs = [f"Observation/{m['id']}" for m in [stored_panel, *stored_members]]
    return Session.from_observations(stored_panel, stored_members), refs


def _existing_read(tx: Tx, session_key: str, care_plan_id: str) -> Read[list[Json]]:
    """The stored panel of a session identifier on this CarePlan, if any. (Another plan's
    session with the same identifier is another session: apps number sessions per patient.)"""
    return tx.find_read(
        "Observation",
        [
            ("identifier", session_key),
            ("code", f"{CAREPLAN_CS}|{SESSION_CODE}"),
            ("based-on", f"CarePlan/{care_plan_id}"),
        ],
        limit=1,
    )


# What the store adds or rewrites when it keeps a session: left out when comparing contents.
_LINKS = ("id", "meta", "hasMember", "subject", "basedOn")


def _content(resource: Json) -> bytes:
    """A session resource as submitted, comparable with its stored form (3.0 is 3)."""

    def plain(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    kept = {k: v for k, v in resource.items() if k not in _LINKS}
    return orjson.dumps(plain(kept), option=orjson.OPT_SORT_KEYS)


def _same_session(tx: Tx, stored_panel: Json, session: Session) -> bool:
    """Whether a stored session panel and its repetitions hold what `session` holds."""
    if _content(stored_panel) != _content(session.panel):
        return False
    refs = [m.get("reference", "").partition("/") for m in stored_panel.get("hasMember", [])]
    members = tx.read_many([(kind, rid) for kind, _, rid in refs])
    stored = sorted(_content(m.body or {}) for m in members)
    return stored == sorted(_content(m) for m in session.members)


def _existing_answer(
    tx: Tx, care_plan: Json, key: str, session: Session, stored: list[Json]
) -> Json | None:
    """The answer given the first time this session identifier was submitted, if any
    (`stored`: what `_existing_read` found). 409 if the identifier came with other content."""
    if not stored:
        return None
    if not _same_session(tx, stored[0], session):
        raise fhir_error(
            409,
            "conflict",
            f"Session identifier {key} was already used for a session with other content: "
            "a new or corrected session needs an identifier of its own",
            "Observation.identifier",
        )
    answer = stored_answer(tx, str(care_plan["id"]), key)
    if answer is None:
        raise fhir_error(
            409,
            "conflict",
            f"Session {key} is stored but was not decided for CarePlan/{care_plan['id']}",
            "Observation.identifier",
        )
    return answer


def stored_answer(tx: Tx, care_plan_id: str, session_key: str) -> Json | None:
    """The answer of an earlier decision, read back through its Provenance."""
    gr = tx.get("GuidanceResponse", resource_id(care_plan_id, session_key, "guidance-response"))
    provenance = tx.get("Provenance", resource_id(care_plan_id, session_key, "provenance"))
    if gr is None or provenance is None or gr.body is None or provenance.body is None:
        return None
    created = []
    for target in provenance.body.get("target", []):
        resource_type, _, target_id = target["reference"].partition("/")
        if resource_type in ("GuidanceResponse", "CarePlan"):
            continue
        found = tx.get(resource_type, target_id)
        if found is not None and found.body is not None:
            created.append(found.body)
    care_plan = _answered_care_plan(tx, care_plan_id, provenance.body)
    return parameters(gr.body, care_plan, [*created, provenance.body])


def _answered_care_plan(tx: Tx, care_plan_id: str, provenance: Json) -> Json:
    """The CarePlan version the decision answered with: the one it wrote (Provenance target),
    else the one it read and left as it was (entity); today's for decisions stored before
    Provenance named versions."""
    references = [t.get("reference", "") for t in provenance.get("target", [])]
    references += [e.get("what", {}).get("reference", "") for e in provenance.get("entity", [])]
    prefix = f"CarePlan/{care_plan_id}/_history/"
    for reference in references:
        if reference.startswith(prefix) and reference[len(prefix) :].isdigit():
            return tx.vread("CarePlan", care_plan_id, int(reference[len(prefix) :])).body or {}
    return tx.read("CarePlan", care_plan_id).body or {}


def _latest_decision_read(
    tx: Tx, care_plan_id: str, patient_id: str, at: datetime
) -> Read[list[Stored]]:
    """The plan's newest decisions dated after `at` (by their date index: the same second
    too), newest first; `_later_clock` picks the session decisions among them."""
    after = naive_utc(at) + timedelta(microseconds=1)
    return tx.latest_dated_read(
        "GuidanceResponse",
        f"Patient/{patient_id}",
        (after, MAX_DT),
        ("result", f"CarePlan/{care_plan_id}"),
        _LATER_DECISIONS,
    )


def _later_clock(found: list[Stored], at: datetime) -> datetime | None:
    """The clock of the newest session decision after `at` that `_latest_decision_read`
    found, if any: then the decision at `at` is late. Evaluations do not count (they re-check
    stored data; a session they did not know makes them stale, history.current), nor do
    GuidanceResponses this service did not write or that are entered-in-error."""
    clock = at if at.tzinfo else at.replace(tzinfo=UTC)
    later = []
    for stored in found:
        body = stored.body or {}
        if body.get("status") == "entered-in-error":
            continue
        decision = parse_decision(body, UTC)
        if decision is not None and not is_evaluation(decision) and decision.at > clock:
            later.append(decision.at)
    return max(later, default=None)


def _persist(tx: Tx, outputs: DecisionOutputs, care_plan: Stored) -> Json:
    """Write the decision's resources and answer with what was stored (ids, meta)."""
    # Optimistic on the version read at the start: a concurrent change makes the unit retry.
    # First, so that on PostgreSQL its check rides with the creates' INSERT, not alone.
    # A decision that leaves the plan as it is (data-required, a late session) adds no version.
    changed = outputs.care_plan_changed
    updated = tx.replace(care_plan, outputs.care_plan) if changed else care_plan
    written = tx.create_many([(r, r["id"]) for r in [outputs.guidance_response, *outputs.created]])
    # The decision's events, in the transaction that stores it: decision-made, then
    # careplan-changed, then review-requested (and the retry window's timers).
    plan_change = [Change(updated)] if changed else []
    outbox.record(
        tx,
        [
            Change(written[0], created=True),
            *plan_change,
            *(Change(w, created=True) for w in written[1:]),
        ],
    )
    bodies = [w.body or {} for w in written]
    return parameters(bodies[0], updated.body or {}, bodies[1:])


def _patient_id(care_plan: Json) -> str:
    patient_type, _, patient_id = ((care_plan.get("subject") or {}).get("reference", "")).partition(
        "/"
    )
    if patient_type != "Patient":
        raise fhir_error(
            422, "business-rule", "The CarePlan subject must be a Patient", "CarePlan.subject"
        )
    return str(patient_id)


def decide_and_store(
    tx: Tx,
    care_plan: Stored,
    session: Session | None,
    at: datetime,
    session_refs: list[str],
    plan_definition: Json | None = None,
    patient: Json | None = None,
) -> tuple[Decision, Json]:
    plan_body = care_plan.body or {}
    plan_definition = plan_definition or plan_definition_for(tx, plan_body)
    if patient is None:
        patient = tx.read("Patient", _patient_id(plan_body)).body or {}
    params = read_params(plan_definition)
    # Decided before (the same evaluation at the same clock)? And has the plan a decision
    # later than this clock? Both asked with the record's reads.
    answered = resource_id(care_plan.id, decision_key(session, at), "guidance-response")
    try:
        record, (existing, latest) = load_record_and(
            tx,
            patient,
            plan_body,
            params,
            at,
            tx.get_read("GuidanceResponse", answered),
            _latest_decision_read(tx, care_plan.id, str(patient.get("id")), at),
        )
        decision = decide(plan_definition, record, session, at)
        newer = _later_clock(latest, at)
        outputs = build_outputs(
            decision, params, plan_body, session_refs or None, newer, care_plan.version
        )
    except OverflowError:
        # The record's look-back or a retry window runs past year 1 or 9999.
        raise fhir_error(
            422,
            "business-rule",
            f"The decision clock {at.isoformat()} lies too close to the edge of the calendar "
            "(years 0001-9999) for the protocol's look-back and retry windows",
        ) from None
    if existing is not None:  # answer as before
        answer = stored_answer(tx, care_plan.id, decision.session_key)
        if answer is not None:
            return decision, answer
    answer = _persist(tx, outputs, care_plan)
    if STOP_STANDS in decision.rule_ids and session_refs:
        link_to_open_review(tx, care_plan.id, session_refs)
    tx.after_commit.append(lambda: record_decision(decision.code))
    return decision, answer


def link_to_open_review(tx: Tx, care_plan_id: str, session_refs: list[str]) -> None:
    """R12 (C5): a session on a stopped plan joins the supportingInfo of the plan's open review
    request (the newest active one a stop-and-refer made), so the clinician sees what the
    patient did; no new request is opened."""
    found = tx.find(
        "ServiceRequest",
        [("based-on", f"CarePlan/{care_plan_id}"), ("status", "active"), ("_sort", "-authored")],
    )
    for body in found:
        codes = {c.get("code") for rc in body.get("reasonCode", []) for c in rc.get("coding", [])}
        if STOP_AND_REFER not in codes:
            continue
        stored = tx.read("ServiceRequest", str(body["id"]), lock=True)
        current = stored.body or {}
        known = {str(r.get("reference")) for r in current.get("supportingInfo", [])}
        added = [{"reference": r} for r in session_refs if r not in known]
        if added:
            kept = {k: v for k, v in current.items() if k != "meta"}
            tx.replace(
                stored, {**kept, "supportingInfo": [*current.get("supportingInfo", []), *added]}
            )
        return


def submit_session(
    tx: Tx,
    care_plan_id: str,
    bundle: Json,
    now: datetime,
    base: str | None = None,
    where: str = "Bundle",
    *,
    caller: Caller,
) -> Json:
    """`base`: this server's FHIR base URL; references under it count as local. `where`: the
    Bundle's path in the request body, for the paths of the 422s."""
    # Locked: two sessions of one plan are decided one after the other, never interleaved.
    care_plan = tx.read("CarePlan", care_plan_id, lock=True)
    plan_body = care_plan.body or {}
    access.check_writable(caller, _PLAN_UPDATE, plan_body)
    canonical = protocol_canonical(plan_body)  # 422 unless on this protocol
    bundle = local_references(bundle, base)
    session = _session_from(bundle, where)
    key = identifier_key(session.panel)
    patient_id = _patient_id(plan_body)
    # What the rest needs first, in one round trip on PostgreSQL.
    plan_definitions, patient, *earlier = tx.together(
        canonical_read(tx, "PlanDefinition", canonical),
        tx.get_read("Patient", patient_id),
        *([_existing_read(tx, key, care_plan_id)] if key is not None else []),
    )
    plan_definition = known_plan_definition(plan_definitions, canonical)
    # Checked first, so a resubmission that is not a usable session is told why (422).
    problems = check_session(session, plan_body, now, plan_started(tx, care_plan))
    if problems:
        raise unprocessable(_in_request(problems, bundle, session, where))
    if key is not None:
        answer = _existing_answer(tx, plan_body, key, session, earlier[0])
        if answer is not None:
            return answer
    check_plan_open(plan_body, read_params(plan_definition), session=True)
    stored_session, refs = _store_session(tx, session, plan_body, caller)
    clock = session_clock(session)
    patient_body = live(patient, "Patient", patient_id).body or {}
    _, answer = decide_and_store(
        tx, care_plan, stored_session, clock, refs, plan_definition, patient_body
    )
    return answer


def evaluate(tx: Tx, care_plan_id: str, at: datetime, now: datetime, *, caller: Caller) -> Json:
    """Decide from stored data at clock `at` (not in the future: 422)."""
    if at > now:
        raise fhir_error(422, "business-rule", "at: the decision clock lies in the future", "at")
    care_plan = tx.read("CarePlan", care_plan_id, lock=True)
    access.check_writable(caller, _PLAN_UPDATE, care_plan.body)
    before = before_plan_start([("at", at)], plan_started(tx, care_plan), care_plan.id)
    if before:
        raise unprocessable(before)
    answer = stored_answer(tx, care_plan.id, decision_key(None, at))
    if answer is not None:  # evaluated at this clock before: answer as then
        return answer
    plan_body = care_plan.body or {}
    plan_definition = plan_definition_for(tx, plan_body)
    check_plan_open(plan_body, read_params(plan_definition))
    _, answer = decide_and_store(tx, care_plan, None, at, [], plan_definition)
    return answer


def answer_touched(answer: Json) -> Touched:
    """What a $submit-session or $evaluate answer holds: the decision, the CarePlan and what
    the decision created, each at the version stored (the patient: the CarePlan's)."""
    return Touched.of(part.get("resource") for part in answer.get("parameter", ()))


async def submit(
    store: Store,
    care_plan_id: str,
    bundle: Json,
    now: datetime,
    base: str,
    where: str,
    caller: Caller,
    audit: Audit | None = None,
    *,
    long: bool = False,
) -> Json:
    """$submit-session as one unit of work (see submit_session), its event in it; ``long``:
    a large body."""

    def unit(tx: Tx) -> Json:
        answer = submit_session(tx, care_plan_id, bundle, now, base, where, caller=caller)
        record(tx, audit, answer_touched(answer))
        return answer

    return await store.arun(unit, long=long)


async def reevaluate(
    store: Store,
    care_plan_id: str,
    at: datetime,
    now: datetime,
    caller: Caller,
    audit: Audit | None = None,
) -> Json:
    """$evaluate as one unit of work (see evaluate), its event in it."""

    def unit(tx: Tx) -> Json:
        answer = evaluate(tx, care_plan_id, at, now, caller=caller)
        record(tx, audit, answer_touched(answer))
        return answer

    return await store.arun(unit)


def parse_clock(text: str) -> datetime:
    """An `at` parameter (the decision clock): a FHIR dateTime keeps its own UTC offset, so
    "today" is the day where the patient is; a date alone is its start in UTC."""
    try:
        low, _ = parse_range(text)
    except ValueError as exc:
        raise fhir_error(400, "invalid", f"at: {exc}") from None
    clock = low.replace(tzinfo=UTC)
    offset = _OFFSET.search(text) if "T" in text else None
    if offset is None:
        return clock
    sign = 1 if offset["sign"] == "+" else -1
    shift = timedelta(hours=int(offset["h"]), minutes=int(offset["m"]))
    return clock.astimezone(timezone(sign * shift))
