"""PlanDefinition/$apply and enrolment: the protocol applied to a patient as a CarePlan."""

from datetime import datetime
from typing import Any

from service.auth.permissions import Interaction
from service.fhir.errors import fhir_error
from service.protocol.apply import AppliedPlan, apply_plan
from service.protocol.codes import PLAN_DEFINITION_URL
from service.protocol.conformance import check_care_plan
from service.protocol.inputs import PatientRecord
from service.protocol.parameters import read_params
from service.store.repository import Tx
from service.store.runner import Store
from service.usecases import access
from service.usecases.access import Caller
from service.usecases.audit_trail import Audit, Touched
from service.usecases.audit_trail import read as audited_read
from service.usecases.records import (
    find_canonical,
    load_record,
    newest_version,
    plan_definition_for,
)
from service.usecases.sessions import unprocessable

Json = dict[str, Any]


def _activity_definitions(tx: Tx, plan_definition: Json) -> dict[str, Json]:
    """The ActivityDefinitions the plan's actions name, by canonical url (and url|version)."""
    found: dict[str, Json] = {}
    stack = list(plan_definition.get("action", []))
    while stack:
        action = stack.pop()
        stack.extend(action.get("action", []))
        canonical = action.get("definitionCanonical")
        if not canonical or canonical in found:
            continue
        definition = find_canonical(tx, "ActivityDefinition", canonical)
        if definition is not None:
            found[canonical] = found[canonical.partition("|")[0]] = definition
    return found


def apply(tx: Tx, plan_definition: Json, subject: str, at: datetime, caller: Caller) -> Json:
    """The CarePlan for `subject` (not stored, as the spec says of $apply); a patient the
    caller may not read is 404."""
    subject_type, _, patient_id = subject.partition("/")
    if subject_type != "Patient" or not patient_id:
        raise fhir_error(
            400, "invalid", f"subject must be Patient/<id>, not {subject!r}", "subject"
        )
    patient = tx.read("Patient", patient_id).body or {}
    access.check_readable(caller, Interaction.READ, "Patient", patient_id, patient)
    record = load_record(tx, patient, None, read_params(plan_definition), at, earlier_decisions=[])
    return apply_to_record(tx, plan_definition, record, at).care_plan


def apply_to_record(
    tx: Tx, plan_definition: Json, record: PatientRecord, at: datetime
) -> AppliedPlan:
    """$apply for a record given whole (a CDS Hooks call brings an EHR's patient data): the
    CarePlan and the decision behind it."""
    return apply_plan(plan_definition, _activity_definitions(tx, plan_definition), record, at)


def _plan_definition(tx: Tx, resource_id: str | None, url: str | None) -> Json:
    if resource_id is not None:
        return tx.read("PlanDefinition", resource_id).body or {}
    if not url:
        raise fhir_error(400, "required", "$apply at the type level needs a url parameter", "url")
    # Without a version, the newest one (a clinic's later version, or the service's 1.1.0).
    found = (
        find_canonical(tx, "PlanDefinition", url)
        if "|" in url
        else newest_version(tx, "PlanDefinition", url)
    )
    if found is None:
        raise fhir_error(404, "not-found", f"PlanDefinition {url} is not known")
    return found


async def apply_plan_definition(
    store: Store,
    plan_definition_id: str | None,
    url: str | None,
    subject: str,
    at: datetime,
    caller: Caller,
    audit: Audit | None = None,
) -> Json:
    """$apply of the PlanDefinition with that id, or (type level) with that canonical url.
    Its event names the PlanDefinition applied and the patient."""

    def unit(tx: Tx) -> tuple[Json, Json]:
        plan_definition = _plan_definition(tx, plan_definition_id, url)
        return plan_definition, apply(tx, plan_definition, subject, at, caller)

    def touched(result: tuple[Json, Json]) -> Touched:
        return Touched.of([result[0]], [subject] if subject.startswith("Patient/") else [])

    _, care_plan = await audited_read(store, audit, unit, touched)
    return care_plan


def validate_care_plan(tx: Tx, care_plan: Json) -> None:
    """Every stored CarePlan: one that claims the protocol must not contradict it (422)."""
    claims = [
        c
        for c in care_plan.get("instantiatesCanonical", [])
        if c.partition("|")[0] == PLAN_DEFINITION_URL
    ]
    if not claims:
        return
    problems = check_care_plan(care_plan, plan_definition_for(tx, care_plan))
    if problems:
        raise unprocessable(problems)
