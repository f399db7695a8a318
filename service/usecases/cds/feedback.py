"""CDS Hooks feedback: each accepted or overridden card stored as a Task, counted in metrics.

Why a Task: a card proposes an action to the clinician, and the feedback says whether the
clinician took it up. That is what a Task's status says: ``accepted`` (a suggestion was
accepted) or ``rejected`` (the card was overridden), with ``statusReason`` the override
reason the clinician chose, ``note`` their comment, and one ``input`` per accepted suggestion.
It is searchable with the parameters Task already has here, for example:

- all feedback on one service: ``Task?identifier=<CARD_SYSTEM>/flexion-order-sign|``
- its overrides, counted: ``...&status=rejected&_summary=count``
- the feedback on one card: ``Task?identifier=<card uuid>``
- over a period: ``...&authored-on=ge2026-01-01`` (``authoredOn`` is the outcome's time)

(An AuditEvent records access, not a clinical answer; a Communication or an Observation
would say something about the patient, and feedback names no patient.)

The same feedback entry sent twice (a retry) is stored once: the Task id derives from it.
"""

import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from service.fhir.errors import FhirError, Issue
from service.fhir.validate import validate_resource
from service.observability import record_cds_feedback
from service.protocol.codes import CANONICAL_BASE
from service.store.repository import Tx
from service.store.runner import Store
from service.usecases.cds.request import bad_request
from service.usecases.cds.services import CdsService

Json = dict[str, Any]
CARD_SYSTEM = f"{CANONICAL_BASE}/sid/cds-card"
_STATUS = {"accepted": "accepted", "overridden": "rejected"}
# Fixed forever: feedback Task ids derive from it.
_NAMESPACE = uuid.UUID("4f7f2c1d-8a3b-5e6c-9d0e-1a2b3c4d5e6f")
MAX_ENTRIES = 100


@dataclass(frozen=True)
class _Entry:
    outcome: str
    task: Json


def card_system(service: CdsService) -> str:
    return f"{CARD_SYSTEM}/{service.id}"


def parse_feedback(service: CdsService, body: Any) -> list[_Entry]:
    if not isinstance(body, dict):
        raise FhirError(400, [Issue("structure", "The request body must be a JSON object")])
    entries = body.get("feedback")
    if not isinstance(entries, list) or not entries:
        raise bad_request("feedback must be a non-empty array", "feedback", "required")
    if len(entries) > MAX_ENTRIES:
        raise bad_request(f"at most {MAX_ENTRIES} feedback entries per call", "feedback")
    return [_entry(service, entry, f"feedback[{i}]") for i, entry in enumerate(entries)]


def _uuid(value: Any, where: str) -> str:
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise bad_request(f"{where} must be a UUID", where)


def _entry(service: CdsService, entry: Any, where: str) -> _Entry:
    if not isinstance(entry, dict):
        raise bad_request(f"{where} must be an object", where)
    card = _uuid(entry.get("card"), f"{where}.card")
    outcome = entry.get("outcome")
    if outcome not in _STATUS:
        raise bad_request(f"{where}.outcome must be accepted or overridden", f"{where}.outcome")
    when = entry.get("outcomeTimestamp")
    if not isinstance(when, str) or not when:
        raise bad_request(f"{where}.outcomeTimestamp is required", f"{where}.outcomeTimestamp")
    accepted = entry.get("acceptedSuggestions")
    if outcome == "accepted" and (not isinstance(accepted, list) or not accepted):
        raise bad_request(
            f"{where}.acceptedSuggestions is required for an accepted card",
            f"{where}.acceptedSuggestions",
        )
    suggestions = [
        _uuid(
            (s or {}).get("id") if isinstance(s, dict) else None,
            f"{where}.acceptedSuggestions[{k}].id",
        )
        for k, s in enumerate(accepted if isinstance(accepted, list) else [])
    ]
    task: Json = {
        "resourceType": "Task",
        "identifier": [{"system": card_system(service), "value": card}],
        "status": _STATUS[outcome],
        "intent": "proposal",
        "code": {"text": "CDS Hooks card feedback"},
        "description": f"{service.title}: card {card} {outcome}",
        "authoredOn": when,
        "lastModified": when,
    }
    if suggestions:
        task["input"] = [
            {"type": {"text": "accepted suggestion"}, "valueString": s} for s in suggestions
        ]
    override = entry.get("overrideReason")
    if override is not None:
        task.update(_override(override, f"{where}.overrideReason"))
    task["id"] = str(
        uuid.uuid5(_NAMESPACE, f"{service.id}|{card}|{outcome}|{when}|{','.join(suggestions)}")
    )
    try:
        validate_resource(task)
    except FhirError as error:
        # The entry's values landed in a Task element (a timestamp, a Coding): say which.
        raise FhirError(
            400, [Issue(i.code, f"{where}: {i.diagnostics}", i.severity) for i in error.issues]
        ) from None
    return _Entry(outcome, task)


def _override(override: Any, where: str) -> Json:
    if not isinstance(override, dict):
        raise bad_request(f"{where} must be an object", where)
    reason, comment = override.get("reason"), override.get("userComment")
    if reason is None and comment is None:
        raise bad_request(f"{where} needs a reason, a userComment or both", where, "required")
    if comment is not None and (not isinstance(comment, str) or not comment.strip()):
        raise bad_request(f"{where}.userComment must be text", f"{where}.userComment")
    found: Json = {}
    if reason is not None:
        if not isinstance(reason, dict):
            raise bad_request(f"{where}.reason must be a Coding", f"{where}.reason")
        found["statusReason"] = {"coding": [reason]}
        if reason.get("display"):
            found["statusReason"]["text"] = reason["display"]
    if comment is not None:
        found["note"] = [{"text": comment}]
    return found


async def record_feedback(store: Store, service: CdsService, body: Any) -> list[str]:
    """Stores each feedback entry once; the Task references, in the order given."""
    entries = parse_feedback(service, body)

    def unit(tx: Tx) -> list[str]:
        for entry in entries:
            if tx.get("Task", entry.task["id"]) is None:
                tx.create(entry.task, entry.task["id"])
                tx.after_commit.append(partial(record_cds_feedback, service.id, entry.outcome))
        return [f"Task/{entry.task['id']}" for entry in entries]

    return await store.arun(unit)
