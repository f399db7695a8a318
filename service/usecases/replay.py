"""Replay a CarePlan's stored sessions against a chosen PlanDefinition version.

Shows a clinic what a new threshold would have changed: each session, and each `$evaluate`
the plan had, is decided again, in time order, from the record as it stood at its own clock,
with the decisions of the replay itself (not the stored ones) as the plan's history, and the
CarePlan as the replay leaves it (starting from its first version): a stop the new version
makes stays a stop, since nobody can know whether a clinician would have resumed it. An
evaluation a late session made stale is left out, as the plan's own history leaves it out.
Nothing is written.
"""

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.fhir.dates import parse_range
from service.fhir.errors import fhir_error
from service.protocol.activities import stopped_flexion
from service.protocol.codes import CAREPLAN_CS, PLAN_DEFINITION_URL, SESSION_CODE
from service.protocol.decide import decide, session_clock
from service.protocol.fhirdata import identifier_key
from service.protocol.history import (
    P_RETRY_END,
    P_RETRY_START,
    current,
    is_evaluation,
    parse_decision,
)
from service.protocol.inputs import Session
from service.protocol.outputs import build_outputs, resource_id
from service.protocol.parameters import Params, read_params
from service.protocol.session_checks import DECIDABLE_STATUSES
from service.store.repository import HistoryEntry, Tx
from service.store.runner import Store
from service.usecases.records import find_canonical, load_record, plan_definition_for

Json = dict[str, Any]
_MAX_VERSIONS = 100_000


@dataclass(frozen=True)
class Outcome:
    """What a decision said, as far as a clinic compares two versions: the decision, its rules
    and warnings, the retry window, whether it requested a clinician review, and the
    PlanDefinition version that decided it."""

    code: str
    rules: tuple[str, ...]
    retry_window: str | None
    plan: str
    # A review that comes without a rule of its own (W1's escalation, C7); None: not known
    review: bool | None = None

    @classmethod
    def of(cls, guidance_response: Json, review: bool | None = None) -> "Outcome":
        codes = [c["code"] for rc in guidance_response["reasonCode"] for c in rc["coding"]]
        values = {
            p["name"]: next((v for k, v in p.items() if k.startswith("value")), None)
            for p in guidance_response["contained"][0]["parameter"]
        }
        start, end = values.get(P_RETRY_START), values.get(P_RETRY_END)
        return cls(
            code=codes[0],
            rules=tuple(codes[1:]),
            retry_window=f"{start}..{end}" if start and end else None,
            plan=str(guidance_response.get("moduleCanonical", "")),
            review=review,
        )

    def same_as(self, other: "Outcome") -> bool:
        known = self.review is not None and other.review is not None
        return (self.code, self.rules, self.retry_window) == (
            other.code,
            other.rules,
            other.retry_window,
        ) and (not known or self.review == other.review)


@dataclass(frozen=True)
class ReplayedDecision:
    session: str  # the session's key, or for an evaluation "evaluation|<its clock in UTC>"
    clock: str
    stored: Outcome | None
    replayed: Outcome

    @property
    def changed(self) -> bool:
        """The replayed version decides otherwise: another decision, other rules or warnings,
        another retry window, or a review request the other did not make."""
        return self.stored is not None and not self.stored.same_as(self.replayed)


def _plan_version(tx: Tx, care_plan: Json, version: str | None) -> Json:
    if version is None:
        return plan_definition_for(tx, care_plan)
    found = find_canonical(tx, "PlanDefinition", f"{PLAN_DEFINITION_URL}|{version}")
    if found is None:
        raise fhir_error(404, "not-found", f"PlanDefinition version {version} is not stored")
    return found


def _versions(tx: Tx, care_plan_id: str) -> list[HistoryEntry]:
    """Every version of the CarePlan, oldest first."""
    entries, _, _ = tx.history("CarePlan", care_plan_id, None, _MAX_VERSIONS, None)
    return sorted((e for e in entries if e.body is not None), key=lambda e: e.version)


def _resumes(versions: list[HistoryEntry], params: Params) -> list[HistoryEntry]:
    """The versions in which a clinician resumed a stopped plan (no decision un-stops one)."""
    return [
        version
        for before, version in itertools.pairwise(versions)
        if stopped_flexion(before.body or {}, params) is not None
        and stopped_flexion(version.body or {}, params) is None
    ]


def _stored_at(resource: Json) -> datetime | None:
    """When the resource was stored (the store's clock, as the history's)."""
    text = (resource.get("meta") or {}).get("lastUpdated")
    return parse_range(text)[0] if isinstance(text, str) else None


def _between(moment: datetime, after: datetime | None, until: datetime | None) -> bool:
    return (after is None or moment > after) and (until is None or moment <= until)


def _resumed(
    care_plan: Json, params: Params, resumes: list[HistoryEntry], until: datetime | None
) -> Json:
    """The replay's plan after a clinician's resume: if the replay has it stopped, its
    activities become those the clinician set."""
    if stopped_flexion(care_plan, params) is None:
        return care_plan
    latest = [r for r in resumes if _between(r.last_updated, None, until)][-1]
    return {**care_plan, "activity": (latest.body or {}).get("activity", [])}


@dataclass(frozen=True)
class _Event:
    """What the plan decided on: a session, or an evaluation (session None) at its clock."""

    clock: datetime
    key: str
    session: Session | None
    stored: Json | None  # the stored decision (GuidanceResponse), if any
    stored_at: datetime | None  # when it was decided
    reviewed: bool | None = None  # whether the stored decision requested a clinician review


def _sessions(tx: Tx, care_plan_id: str) -> list[_Event]:
    panels = tx.find(
        "Observation",
        [
            ("based-on", f"CarePlan/{care_plan_id}"),
            ("code", f"{CAREPLAN_CS}|{SESSION_CODE}"),
            ("_sort", "date"),
        ],
    )
    events = []
    for panel in panels:
        if panel.get("status") not in DECIDABLE_STATUSES:
            continue  # never decided (preliminary, entered-in-error, ...)
        key = identifier_key(panel) or f"Observation/{panel['id']}"
        found = tx.get("GuidanceResponse", resource_id(care_plan_id, key, "guidance-response"))
        stored = found.body if found and found.body else None
        refs = [m["reference"].partition("/") for m in panel.get("hasMember", [])]
        members = [m.body for m in tx.read_many([(t, i) for t, _, i in refs]) if m.body]
        session = Session.from_observations(panel, members)
        # When the session was decided (its panel may have been edited since).
        stored_at = _stored_at(stored or panel)
        reviewed = _reviewed(tx, care_plan_id, key) if stored else None
        events.append(_Event(session_clock(session), key, session, stored, stored_at, reviewed))
    return events


def _reviewed(tx: Tx, care_plan_id: str, key: str) -> bool:
    """Whether the stored decision for `key` requested a clinician review (its ServiceRequest)."""
    return tx.get("ServiceRequest", resource_id(care_plan_id, key, "service-request")) is not None


def _evaluations(tx: Tx, care_plan_id: str, sessions: list[_Event]) -> list[_Event]:
    """The plan's stored evaluations, but those a late session made stale."""
    responses = tx.find("GuidanceResponse", [("result", f"CarePlan/{care_plan_id}")])
    live = [r for r in responses if r.get("status") != "entered-in-error"]
    parsed = [(d, r) for r in live if (d := parse_decision(r, None)) is not None]
    by_key = {d.session_key: r for d, r in parsed if is_evaluation(d)}
    # The plan's decisions as its own history reads them (history.current).
    decisions = [d for d, _ in parsed if is_evaluation(d)]
    decisions += [d for e in sessions if e.stored and (d := parse_decision(e.stored, None))]
    ordered = sorted(decisions, key=lambda d: (d.at, d.code, d.session_key or ""))
    events = []
    for d in current(ordered):
        if is_evaluation(d):
            stored, key = by_key[d.session_key], str(d.session_key)
            reviewed = _reviewed(tx, care_plan_id, key)
            events.append(_Event(d.at, key, None, stored, _stored_at(stored), reviewed))
    return events


def replay(store: Store, care_plan_id: str, version: str | None = None) -> list[ReplayedDecision]:
    def unit(tx: Tx) -> list[ReplayedDecision]:
        current_plan = tx.read("CarePlan", care_plan_id).body or {}
        plan_definition = _plan_version(tx, current_plan, version)
        params = read_params(plan_definition)
        patient_id = current_plan["subject"]["reference"].partition("/")[2]
        patient = tx.read("Patient", patient_id).body or {}
        # The replay's own CarePlan: as enrolled, then as each replayed decision leaves it,
        # plus the clinicians' resumes of a stopped plan where they happened. (Today's plan
        # would carry later changes into the past: its running activities would undo a stop
        # the replayed version makes, as if a clinician had resumed it.)
        versions = _versions(tx, care_plan_id)
        care_plan = versions[0].body or current_plan
        resumes = _resumes(versions, params)
        seen_until = None
        sessions = _sessions(tx, care_plan_id)
        events = sorted(
            [*sessions, *_evaluations(tx, care_plan_id, sessions)],
            key=lambda e: (e.clock, e.session is None),
        )
        replayed: list[Json] = []
        results = []
        for event in events:
            if any(_between(r.last_updated, seen_until, event.stored_at) for r in resumes):
                care_plan = _resumed(care_plan, params, resumes, event.stored_at)
            seen_until = event.stored_at
            # The latest replayed decisions carry the plan state; older ones add nothing.
            record = load_record(tx, patient, care_plan, params, event.clock, replayed[-3:])
            decision = decide(plan_definition, record, event.session, event.clock)
            outputs = build_outputs(decision, params, care_plan)
            replayed.append(outputs.guidance_response)
            care_plan = outputs.care_plan
            results.append(
                ReplayedDecision(
                    session=event.key,
                    clock=event.clock.isoformat(),
                    stored=Outcome.of(event.stored, event.reviewed) if event.stored else None,
                    replayed=Outcome.of(
                        outputs.guidance_response, outputs.service_request is not None
                    ),
                )
            )
        return results

    return store.run(unit, read_only=True)
