"""What the clinical core is given: the patient's record and, optionally, a new session.

`PatientRecord` holds plain FHIR R4 JSON dicts. The storage layer fills it with

- every Observation of the patient whose effective time lies in the last
  `parameters.lookback_days(params)` days before the decision clock (session panels: only
  those of the last day, which is all W3's count of the day's sessions needs), **plus** the
  latest `episode-phase`, `extension-program` and `red-flag-screen` Observation whatever its
  age (state asserted once stays true until replaced);
- `earlier_decisions`: this CarePlan's latest GuidanceResponses before the clock. Each carries
  the plan state after it (`state-*` output parameters, history.py), so the latest is enough;
  for decisions written before they carried it, the whole window of them, folded.

Patient-state Observations (codes of the service CodeSystem, see DESIGN 6):

- `red-flag-screen`: valueBoolean true = positive; one component per screened item (code = the
  item code, valueBoolean true = present). The latest screen within the lookback decides, so a
  clinician clears a positive screen by recording a negative one. A QuestionnaireResponse whose
  `questionnaire` names a red-flag Questionnaire counts too (any valueBoolean true = positive,
  the item linkId names the flag).
- `episode-phase`: valueCodeableConcept acute | recovering | persistent (latest wins). A Condition
  279039007 whose `stage.summary` carries one of these codes is read when no Observation exists.
- `extension-program`: effectivePeriod.start = first day of extension exercises; components
  `baseline-pain` (valueInteger, pain before the program), `current-pain` (valueInteger, pain
  now; when absent the latest daily pain is used) and `residual-pain-location`
  (valueCodeableConcept central | one-side | buttock-thigh | below-knee).
- daily pain: LOINC 72514-3 Observations that are not session members (no `repetition-index`
  component and not in any panel's `hasMember`).

Observations with status entered-in-error or cancelled are ignored everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from service.protocol.codes import CAREPLAN_CS, REPETITION_INDEX, SESSION_CODE
from service.protocol.fhirdata import (
    Json,
    code_in,
    component,
    component_value,
    identifier_key,
    is_pain_score,
    is_service_code,
    is_void,
    ref_key,
)


@dataclass(frozen=True)
class PatientRecord:
    patient: Json
    care_plan: Json | None = None
    observations: tuple[Json, ...] = ()
    conditions: tuple[Json, ...] = ()
    questionnaire_responses: tuple[Json, ...] = ()
    earlier_decisions: tuple[Json, ...] = ()

    @property
    def patient_ref(self) -> str:
        return ref_key(self.patient) or "Patient/unknown"

    @cached_property
    def index(self) -> ObservationIndex:
        """The Observations sorted by kind once, so no rule rescans the whole window."""
        return index_observations(self.observations)


@dataclass(frozen=True)
class ObservationIndex:
    panels: tuple[Json, ...]  # session panels
    daily_pain: tuple[Json, ...]  # pain scores that belong to no session
    state: dict[str, tuple[Json, ...]]  # other Observations by their service code


def index_observations(observations: tuple[Json, ...] | list[Json]) -> ObservationIndex:
    by_code: dict[str, list[Json]] = {}
    pain: list[Json] = []
    for obs in observations:
        if is_void(obs):
            continue
        if is_pain_score(obs):
            pain.append(obs)
        elif code := code_in(obs.get("code"), CAREPLAN_CS):
            by_code.setdefault(code, []).append(obs)
    panels = by_code.pop(SESSION_CODE, [])
    members = {str(m.get("reference")) for p in panels for m in p.get("hasMember", [])}
    return ObservationIndex(
        panels=tuple(panels),
        daily_pain=tuple(
            o for o in pain if component(o, REPETITION_INDEX) is None and ref_key(o) not in members
        ),
        state={code: tuple(found) for code, found in by_code.items()},
    )


@dataclass(frozen=True)
class Session:
    """A session panel and its repetition Observations, as submitted."""

    panel: Json
    members: tuple[Json, ...] = field(default=())

    @property
    def key(self) -> str:
        """Stable identity of the session: its identifier, else its id."""
        return identifier_key(self.panel) or ref_key(self.panel) or "session"

    @classmethod
    def from_observations(cls, panel: Json, members: list[Json] | tuple[Json, ...]) -> Session:
        return cls(panel=panel, members=tuple(members))

    @classmethod
    def from_bundle(cls, bundle: Json) -> Session:
        """Split a collection Bundle into the panel and the Observations its hasMember names.
        Anything else in the Bundle is refused: a session Bundle holds nothing else."""
        entries = [
            (i, e)
            for i, e in enumerate(bundle.get("entry", []))
            if isinstance(e.get("resource"), dict)
        ]
        panels = [(i, e) for i, e in entries if is_service_code(e["resource"], SESSION_CODE)]
        if len(panels) != 1:
            raise SessionShapeError(
                "entry", "a session Bundle must hold exactly one flexion-session panel"
            )
        panel_at, panel_entry = panels[0]
        panel = panel_entry["resource"]
        by_ref: dict[str, Json] = {}
        for _, entry in entries:
            resource = entry["resource"]
            if entry.get("fullUrl"):
                by_ref[entry["fullUrl"]] = resource
            if key := ref_key(resource):
                by_ref[key] = resource
        wanted = [m.get("reference") for m in panel.get("hasMember", [])]
        if wanted:
            missing = [ref for ref in wanted if ref not in by_ref]
            if missing:
                raise SessionShapeError(
                    f"entry[{panel_at}].resource.hasMember",
                    f"hasMember not in the Bundle: {', '.join(map(str, missing))}",
                )
            members = [by_ref[ref] for ref in wanted]
        else:
            members = [e["resource"] for _, e in entries if is_repetition(e["resource"])]
        listed = {id(panel), *(id(m) for m in members)}
        for i, entry in entries:
            if id(entry["resource"]) not in listed:
                raise SessionShapeError(
                    f"entry[{i}]",
                    "neither the session panel nor a repetition its hasMember lists",
                )
        return cls(panel=panel, members=tuple(members))


class SessionShapeError(ValueError):
    """A session Bundle that cannot be read as one panel and its repetitions; `expression` is
    a path inside the Bundle ("entry[2]")."""

    def __init__(self, expression: str, message: str) -> None:
        super().__init__(message)
        self.expression = expression


def is_repetition(resource: Json) -> bool:
    return (
        is_pain_score(resource)
        and component_value(resource, REPETITION_INDEX, "valueInteger") is not None
    )


def live(resources: tuple[Json, ...] | list[Json]) -> list[Json]:
    return [r for r in resources if not is_void(r)]


def session_member_refs(observations: list[Json]) -> set[str]:
    return {
        str(m.get("reference"))
        for obs in observations
        if is_service_code(obs, SESSION_CODE)
        for m in obs.get("hasMember", [])
    }


def daily_pain(observations: list[Json]) -> list[Json]:
    """Pain scores that belong to no session."""
    members = session_member_refs(observations)
    return [
        obs
        for obs in observations
        if is_pain_score(obs) and not is_repetition(obs) and ref_key(obs) not in members
    ]


def latest_state(observations: list[Json], code: str) -> list[Json]:
    """The patient-state Observations with `code` (caller orders by time)."""
    return [obs for obs in observations if is_service_code(obs, code)]
