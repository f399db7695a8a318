"""Replay a CarePlan's stored sessions against a chosen PlanDefinition version.

Shows a clinic what a new threshold would have changed: each session is decided again, in
time order, from the record as it stood at the session's own clock, with the decisions of
the replay itself (not the stored ones) as the plan's history. Nothing is written.
"""

from dataclasses import dataclass
from typing import Any

from service.fhir.errors import fhir_error
from service.protocol.codes import CAREPLAN_CS, PLAN_DEFINITION_URL
from service.protocol.decide import decide, session_clock
from service.protocol.fhirdata import identifier_key
from service.protocol.inputs import SESSION_CODE, Session
from service.protocol.outputs import build_outputs, resource_id
from service.protocol.parameters import read_params
from service.records import find_canonical, load_record, plan_definition_for
from service.store.repository import Store, Tx

Json = dict[str, Any]


@dataclass(frozen=True)
class ReplayedDecision:
    session: str
    clock: str
    stored: str | None
    replayed: str
    rules: tuple[str, ...]
    plan: str

    @property
    def changed(self) -> bool:
        return self.stored is not None and self.stored != self.replayed


def _code(guidance_response: Json | None) -> str | None:
    if guidance_response is None:
        return None
    return guidance_response["reasonCode"][0]["coding"][0]["code"]


def _plan_version(tx: Tx, care_plan: Json, version: str | None) -> Json:
    if version is None:
        return plan_definition_for(tx, care_plan)
    found = find_canonical(tx, "PlanDefinition", f"{PLAN_DEFINITION_URL}|{version}")
    if found is None:
        raise fhir_error(404, "not-found", f"PlanDefinition version {version} is not stored")
    return found


def replay(store: Store, care_plan_id: str, version: str | None = None) -> list[ReplayedDecision]:
    def unit(tx: Tx) -> list[ReplayedDecision]:
        care_plan = tx.read("CarePlan", care_plan_id).body or {}
        plan_definition = _plan_version(tx, care_plan, version)
        params = read_params(plan_definition)
        patient_id = care_plan["subject"]["reference"].partition("/")[2]
        patient = tx.read("Patient", patient_id).body or {}
        panels = tx.find(
            "Observation",
            [
                ("based-on", f"CarePlan/{care_plan_id}"),
                ("code", f"{CAREPLAN_CS}|{SESSION_CODE}"),
                ("_sort", "date"),
            ],
        )
        replayed: list[Json] = []
        results = []
        for panel in panels:
            refs = [m["reference"].partition("/") for m in panel.get("hasMember", [])]
            members = [m.body for m in tx.read_many([(t, i) for t, _, i in refs]) if m.body]
            session = Session.from_observations(panel, members)
            clock = session_clock(session)
            # The latest replayed decisions carry the plan state; older ones add nothing.
            record = load_record(tx, patient, care_plan, params, clock, replayed[-3:])
            decision = decide(plan_definition, record, session, clock)
            replayed.append(build_outputs(decision, params, care_plan).guidance_response)
            key = identifier_key(panel) or f"Observation/{panel['id']}"
            stored = tx.get("GuidanceResponse", resource_id(care_plan_id, key, "guidance-response"))
            results.append(
                ReplayedDecision(
                    session=key,
                    clock=clock.isoformat(),
                    stored=_code(stored.body if stored else None),
                    replayed=decision.code,
                    rules=decision.rule_ids,
                    plan=decision.plan_canonical,
                )
            )
        return results

    return store.run(unit, read_only=True)
