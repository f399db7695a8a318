"""Sessions that arrive as plain Observations or transaction Bundles, not $submit-session.

Called by every write of the CRUD use cases (usecases/crud.py): a pain score outside 0-10 is
refused; a session panel is decided, through sessions.decide_and_store, once it and all its
repetitions are stored, and only once.
"""

from datetime import datetime
from typing import Any

from service.auth.permissions import Need
from service.fhir.errors import fhir_error
from service.protocol.codes import CAREPLAN_CS, SESSION_CODE
from service.protocol.decide import session_clock
from service.protocol.fhirdata import identifier_key, is_pain_score, is_service_code
from service.protocol.inputs import Session
from service.protocol.outputs import resource_id
from service.protocol.parameters import read_params
from service.protocol.session_checks import (
    DECIDABLE_STATUSES,
    check_pain_observation,
    check_session,
)
from service.store.repository import Stored, Tx
from service.usecases import access
from service.usecases.access import Caller
from service.usecases.records import plan_definition_for
from service.usecases.sessions import (
    check_plan_open,
    decide_and_store,
    plan_started,
    unprocessable,
)

Json = dict[str, Any]
# Provenances read to tell whether a panel's repetitions were used: ours and an EHR's.
_PROVENANCES = 50


def validate_pain_observation(observation: Json) -> None:
    """Every stored Observation: a pain score outside 0-10 is refused (422)."""
    codings = (observation.get("code") or {}).get("coding") or []
    if any(c.get("code") == "72514-3" for c in codings):
        problems = check_pain_observation(observation, "Observation")
        if problems:
            raise unprocessable(problems)


def decide_completed_sessions(
    tx: Tx, written: list[Stored], fresh_ids: bool = False, *, caller: Caller = None
) -> None:
    """Decide a session panel once it and all its repetitions are stored. ``fresh_ids``: the
    server has just assigned the written resources' ids, so no stored panel lists them.
    Deciding changes the CarePlan: the caller needs CarePlan u on it, as for $submit-session."""
    for stored in written:
        body = stored.body
        if stored.type != "Observation" or body is None:
            continue
        if is_service_code(body, SESSION_CODE):
            panels = [body]
        elif not is_pain_score(body):
            continue  # only a pain score can complete a session panel: no lookup for the rest
        elif fresh_ids:
            continue  # an id made just now: no stored panel can list it as a member yet
        else:
            _lock_patient(tx, body)
            panels = tx.find(
                "Observation",
                [
                    ("has-member", f"Observation/{stored.id}"),
                    ("code", f"{CAREPLAN_CS}|{SESSION_CODE}"),
                ],
                limit=5,
            )
        for panel in panels:
            _evaluate_complete_panel(tx, panel, caller)


def _evaluate_complete_panel(tx: Tx, panel: Json, caller: Caller) -> None:
    plan_refs = [
        b["reference"].partition("/")[2]
        for b in panel.get("basedOn", [])
        if b.get("reference", "").startswith("CarePlan/")
    ]
    if not plan_refs or panel.get("status") not in DECIDABLE_STATUSES:
        return  # not a session of a plan, or not final yet (an update to final decides it)
    if not (panel.get("subject") or {}).get("reference"):
        # $submit-session fills it in from the CarePlan; a stored panel has to carry it, or
        # the patient's record (the day's sessions, W3) would not find it.
        raise fhir_error(
            422, "required", "A session panel needs its patient (subject)", "Observation.subject"
        )
    # Locked before the members are read: of two transactions that each store a last piece
    # of the session (two repetitions, or the panel and a repetition, whose search for its
    # panel locks the patient too), the second waits for the first and then sees its write,
    # so the session is decided, once. Patient before CarePlan, always.
    _lock_patient(tx, panel)
    care_plan = tx.get("CarePlan", plan_refs[0], lock=True)
    if care_plan is None or care_plan.deleted or care_plan.body is None:
        return
    member_ids = [m.get("reference", "").partition("/")[2] for m in panel.get("hasMember", [])]
    members = [tx.get("Observation", i) for i in member_ids]
    if not member_ids or any(m is None or m.deleted for m in members):
        return  # not complete yet: the last repetition to arrive triggers the evaluation
    key = identifier_key(panel) or f"Observation/{panel['id']}"
    if tx.get("GuidanceResponse", resource_id(care_plan.id, key, "guidance-response")):
        return  # already decided
    refs = [f"Observation/{panel['id']}", *(f"Observation/{i}" for i in member_ids)]
    if _decided_already(tx, refs):
        return
    access.check_writable(caller, Need("CarePlan", "u"), care_plan.body)
    session = Session.from_observations(panel, [m.body for m in members if m and m.body])
    plan_definition = plan_definition_for(tx, care_plan.body)
    check_plan_open(care_plan.body, read_params(plan_definition), session=True)
    now = datetime.now().astimezone()
    problems = check_session(session, care_plan.body, now, plan_started(tx, care_plan))
    problems = [p for p in problems if p.expression != "panel.identifier"]
    if problems:
        raise unprocessable(problems)
    decide_and_store(tx, care_plan, session, session_clock(session), refs, plan_definition)


def _lock_patient(tx: Tx, observation: Json) -> None:
    """Lock the row of the Observation's patient (PostgreSQL; SQLite has one writer)."""
    reference = str((observation.get("subject") or {}).get("reference", ""))
    patient_type, _, patient_id = reference.partition("/")
    if patient_type == "Patient" and patient_id:
        tx.get("Patient", patient_id, lock=True)


def _decided_already(tx: Tx, refs: list[str]) -> bool:
    """Whether a decision used this panel (then it was updated: not decided again), or 422 if
    one used its repetitions under another panel (the same session stored twice)."""
    found = tx.find("Provenance", [("entity", ",".join(refs))], limit=_PROVENANCES)
    # Ours record a decision (their first target); an EHR's own Provenance does not count.
    used = [
        p
        for p in found
        if str((p.get("target") or [{}])[0].get("reference", "")).startswith("GuidanceResponse/")
    ]
    if not used:
        return False
    inputs = {e.get("what", {}).get("reference") for p in used for e in p.get("entity", [])}
    if refs[0] in inputs:
        return True
    taken = sorted(inputs & set(refs[1:]))
    raise fhir_error(
        422,
        "business-rule",
        f"{', '.join(taken)} already belong to a decided session: a panel may not list them",
        "Observation.hasMember",
    )
