"""The subscription topics (R4 Subscriptions Backport IG) and which change fires which: pure.

A topic is named by its canonical URL ``https://fhir.flexion-careplan.org/SubscriptionTopic/
<name>``, is about one resource type (the event's focus) and allows some filters. In R4 a
topic is a canonical URL the CapabilityStatement lists (the IG's
``capabilitystatement-subscriptiontopic-canonical`` extension); this module is its definition.

- ``decision-made``: a decision was stored (a GuidanceResponse carrying a decision code).
- ``careplan-changed``: a CarePlan was created, changed (by a decision or a clinician) or
  deleted.
- ``review-requested``: a clinician review was requested (a ServiceRequest for an evaluation
  procedure, SNOMED 386053000, as a decision makes it).
- ``retry-window-opened``: a retry Task's ``restriction.period`` began (time-driven).
- ``retry-window-closed``: that window ended and no session was decided inside it.

Filters (the IG's filter criteria: ``[Type?]name=value[,value...][&name=value...]``, every
filter must hold, a comma means any of): ``patient`` (``Patient/<id>``), ``care-plan``
(``CarePlan/<id>``) and ``decision`` (a decision code of the service's CodeSystem).
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from service.protocol.codes import CANONICAL_BASE, CAREPLAN_CS, SNOMED, SNOMED_EVALUATION_PROCEDURE
from service.protocol.fhirdata import code_in, parse_datetime
from service.protocol.history import DECISION_CODES

Json = dict[str, Any]
TOPIC_BASE = f"{CANONICAL_BASE}/SubscriptionTopic"

DECISION_MADE = "decision-made"
CAREPLAN_CHANGED = "careplan-changed"
RETRY_WINDOW_OPENED = "retry-window-opened"
RETRY_WINDOW_CLOSED = "retry-window-closed"
REVIEW_REQUESTED = "review-requested"

PATIENT, CARE_PLAN, DECISION = "patient", "care-plan", "decision"
FILTER_DOCS: Mapping[str, str] = {
    PATIENT: "the patient the event is about: Patient/<id>",
    CARE_PLAN: "the CarePlan the event is about: CarePlan/<id>",
    DECISION: f"the decision code (e.g. hold-back; or {CAREPLAN_CS}|hold-back)",
}
RETRY_TASK_CODE = "retry-flexion"
# A Task in one of these no longer stands for a window anyone waits on.
_ENDED_TASK = frozenset({"cancelled", "entered-in-error", "rejected", "failed", "completed"})


@dataclass(frozen=True)
class Topic:
    name: str
    resource: str  # the type of the event's focus
    description: str
    filters: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"{TOPIC_BASE}/{self.name}"


TOPICS: Mapping[str, Topic] = {
    topic.name: topic
    for topic in (
        Topic(
            DECISION_MADE,
            "GuidanceResponse",
            "A decision was stored: a session or an evaluation was decided.",
            (PATIENT, CARE_PLAN, DECISION),
        ),
        Topic(
            CAREPLAN_CHANGED,
            "CarePlan",
            "A CarePlan was created, changed (by a decision or a clinician) or deleted.",
            (PATIENT, CARE_PLAN),
        ),
        Topic(
            RETRY_WINDOW_OPENED,
            "Task",
            "A retry window opened (the retry Task's restriction.period.start).",
            (PATIENT, CARE_PLAN, DECISION),
        ),
        Topic(
            RETRY_WINDOW_CLOSED,
            "Task",
            "A retry window ended with no session decided inside it.",
            (PATIENT, CARE_PLAN, DECISION),
        ),
        Topic(
            REVIEW_REQUESTED,
            "ServiceRequest",
            "A clinician review was requested (a decision's evaluation ServiceRequest).",
            (PATIENT, CARE_PLAN, DECISION),
        ),
    )
}
BY_URL: Mapping[str, Topic] = {topic.url: topic for topic in TOPICS.values()}
TIMED = (RETRY_WINDOW_OPENED, RETRY_WINDOW_CLOSED)


@dataclass(frozen=True)
class Event:
    """One topic event: what an outbox row holds."""

    topic: str
    focus_type: str
    focus_id: str
    focus_version: int | None
    patient_id: str | None = None
    care_plan_id: str | None = None
    decision: str | None = None
    deleted: bool = False  # the event is the focus's deletion


@dataclass(frozen=True)
class Timer:
    """A time-driven event to fire once ``due`` (naive UTC) has passed."""

    kind: str  # RETRY_WINDOW_OPENED or RETRY_WINDOW_CLOSED
    task_id: str
    due: datetime


# --- which change fires which topic ------------------------------------------------------------

_PATIENT_REF = re.compile(r"(?:.*/)?Patient/([A-Za-z0-9\-.]{1,64})")
_PLAN_REF = re.compile(r"(?:.*/)?CarePlan/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?")


def _id_of(reference: Any, pattern: re.Pattern[str]) -> str | None:
    text = reference.get("reference") if isinstance(reference, dict) else None
    match = pattern.fullmatch(text) if isinstance(text, str) else None
    return match[1] if match else None


def _first_id(references: Iterable[Any], pattern: re.Pattern[str]) -> str | None:
    return next((i for i in (_id_of(r, pattern) for r in references) if i), None)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def _decision_code(concepts: Any) -> str | None:
    codes = (code_in(c, CAREPLAN_CS) for c in _listed(concepts) if isinstance(c, dict))
    return next((c for c in codes if c in DECISION_CODES), None)


def _context(resource_type: str, body: Json) -> tuple[str | None, str | None, str | None]:
    """(patient id, CarePlan id, decision code) of a resource a topic is about."""
    if resource_type == "CarePlan":
        return _id_of(body.get("subject"), _PATIENT_REF), body.get("id"), None
    if resource_type == "GuidanceResponse":
        plan = _id_of(body.get("result"), _PLAN_REF)
        patient = _id_of(body.get("subject"), _PATIENT_REF)
        return patient, plan, _decision_code(body.get("reasonCode"))
    if resource_type == "Task":
        plan = _first_id([body.get("focus"), *_listed(body.get("basedOn"))], _PLAN_REF)
        patient = _id_of(body.get("for"), _PATIENT_REF)
        return patient, plan, _decision_code(body.get("reasonCode"))
    if resource_type == "ServiceRequest":
        plan = _first_id(_listed(body.get("basedOn")), _PLAN_REF)
        patient = _id_of(body.get("subject"), _PATIENT_REF)
        return patient, plan, _decision_code(body.get("reasonCode"))
    return None, None, None


def _is_review_request(body: Json) -> bool:
    codings = (body.get("code") or {}).get("coding") or []
    evaluation = any(
        c.get("system") == SNOMED and c.get("code") == SNOMED_EVALUATION_PROCEDURE for c in codings
    )
    return evaluation and body.get("status") == "active"


def events_for(
    resource_type: str,
    resource_id: str,
    version: int,
    current: Json | None,
    previous: Json | None = None,
    created: bool = False,
) -> list[Event]:
    """The topic events of one write: `current` is the stored body (None: a deletion, then
    `previous` is what was deleted); `created` is true for a new resource."""
    body = current if current is not None else previous
    if body is None:
        return []
    topic = None
    if resource_type == "CarePlan":
        topic = CAREPLAN_CHANGED
    elif created and resource_type == "GuidanceResponse":
        topic = DECISION_MADE if _decision_code(body.get("reasonCode")) else None
    elif created and resource_type == "ServiceRequest":
        topic = REVIEW_REQUESTED if _is_review_request(body) else None
    if topic is None:
        return []
    patient, plan, decision = _context(resource_type, body)
    deleted = current is None
    return [Event(topic, resource_type, resource_id, version, patient, plan, decision, deleted)]


# --- time-driven events ------------------------------------------------------------------------


def _is_retry_task(task: Json) -> bool:
    return code_in(task.get("code"), CAREPLAN_CS) == RETRY_TASK_CODE


def _zone(task: Json) -> tzinfo:
    """The patient's UTC offset, as the decision that made the Task wrote its times."""
    authored = parse_datetime(task.get("authoredOn")) if task.get("authoredOn") else None
    return authored.tzinfo if authored is not None and authored.tzinfo is not None else UTC


def window(task: Json) -> tuple[datetime, datetime] | None:
    """[opens, closes) of a retry Task's window, as naive UTC. A date is the patient's day:
    the window opens at the start of its first day and closes at the end of its last."""
    period = (task.get("restriction") or {}).get("period") or {}
    start, end = period.get("start"), period.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    zone = _zone(task)
    try:
        opens, closes = parse_datetime(start, zone), parse_datetime(end, zone)
    except ValueError:
        return None
    if opens is None or closes is None:
        return None
    if len(end) <= 10:  # a date (or YYYY-MM): the whole day belongs to the window
        closes += timedelta(days=1)
    return _naive_utc(opens), _naive_utc(closes)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def timers_for(task_id: str, task: Json) -> list[Timer]:
    """The time-driven events a retry Task schedules (none for other Tasks)."""
    if not _is_retry_task(task) or task.get("status") in _ENDED_TASK:
        return []
    bounds = window(task)
    if bounds is None:
        return []
    opens, closes = bounds
    return [Timer(RETRY_WINDOW_OPENED, task_id, opens), Timer(RETRY_WINDOW_CLOSED, task_id, closes)]


def window_event(
    kind: str, task_id: str, version: int, task: Json | None, retried: bool
) -> Event | None:
    """The event a due timer fires, if any: none for a Task that is gone or ended, nor a
    closing window in which a session was decided (`retried`)."""
    if task is None or not _is_retry_task(task) or task.get("status") in _ENDED_TASK:
        return None
    if kind == RETRY_WINDOW_CLOSED and retried:
        return None
    patient, plan, decision = _context("Task", task)
    return Event(kind, "Task", task_id, version, patient, plan, decision)


# --- filter criteria ---------------------------------------------------------------------------


class CriteriaError(ValueError):
    """A filter the topic does not allow, or a value it cannot hold; the message says which."""


@dataclass(frozen=True)
class Criteria:
    """Filters: every clause must hold; a clause holds when the event has one of its values."""

    clauses: tuple[tuple[str, frozenset[str]], ...] = ()

    def matches(self, event: Event) -> bool:
        values = {PATIENT: event.patient_id, CARE_PLAN: event.care_plan_id}
        values[DECISION] = event.decision
        return all(values.get(name) in allowed for name, allowed in self.clauses)

    def patients(self) -> frozenset[str] | None:
        """The patients every matching event is about (None: any patient)."""
        found = [allowed for name, allowed in self.clauses if name == PATIENT]
        return frozenset.intersection(*found) if found else None


_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _value(name: str, text: str) -> str:
    if name == DECISION:
        system, bar, code = text.rpartition("|")
        if bar and system != CAREPLAN_CS:
            raise CriteriaError(f"decision codes are of {CAREPLAN_CS}, not {system!r}")
        if code not in DECISION_CODES:
            raise CriteriaError(f"{code!r} is not a decision code ({', '.join(DECISION_CODES)})")
        return code
    kind = "Patient" if name == PATIENT else "CarePlan"
    prefix, slash, rid = text.rpartition("/")
    if slash and not (prefix == kind or prefix.endswith(f"/{kind}")):
        raise CriteriaError(f"{name} takes {kind}/<id>, not {text!r}")
    if not _ID.fullmatch(rid):
        raise CriteriaError(f"{name}: {text!r} names no {kind}")
    return rid


def parse_criteria(topic: Topic, filters: Iterable[str]) -> Criteria:
    """The IG's filter-criteria strings of a subscription to `topic`."""
    clauses: list[tuple[str, frozenset[str]]] = []
    for text in filters:
        query = text.strip()
        resource, question, rest = query.partition("?")
        if question:
            if resource != topic.resource:
                raise CriteriaError(
                    f"filter {text!r}: topic {topic.name} is about {topic.resource}, "
                    f"not {resource or '(no type)'}"
                )
            query = rest
        if not query:
            raise CriteriaError(f"filter {text!r} has no criteria")
        for part in query.split("&"):
            name, equals, values = part.partition("=")
            if not equals or not values:
                raise CriteriaError(f"filter {text!r}: {part!r} is not name=value")
            if ":" in name:
                raise CriteriaError(f"filter {text!r}: modifiers are not supported ({name})")
            if name not in topic.filters:
                raise CriteriaError(
                    f"topic {topic.name} cannot be filtered by {name!r} "
                    f"(it allows {', '.join(topic.filters)})"
                )
            allowed = frozenset(_value(name, v.strip()) for v in values.split(","))
            clauses.append((name, allowed))
    return Criteria(tuple(clauses))
