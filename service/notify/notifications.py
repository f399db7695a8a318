"""Notification Bundles of the R4 Subscriptions Backport IG, and their signature.

A notification is a ``history`` Bundle whose first entry is a Parameters resource with the
``backport-subscription-status-r4`` profile: the subscription, its topic, its status, the type
(``handshake``, ``heartbeat``, ``event-notification``; ``query-status`` and ``query-event``
for $status and $events), ``events-since-subscription-start`` and one ``notification-event``
per event (its number, timestamp, and with ``id-only`` or ``full-resource`` content the focus
and the patient as additional context). The focus resources follow as entries: with ``id-only``
their URL only, with ``full-resource`` the version the event is about.

The body is signed with HMAC-SHA256 under the subscription's secret: header
``X-Careplan-Signature: sha256=<hex>`` over the exact bytes sent.
"""

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from service.fhir.dates import format_instant
from service.notify.state import Numbered
from service.notify.topics import TIMED, TOPICS

Json = dict[str, Any]
IG = "http://hl7.org/fhir/uv/subscriptions-backport"
STATUS_PROFILE = f"{IG}/StructureDefinition/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{IG}/StructureDefinition/backport-subscription-notification-r4"
CONTENT_EXTENSION = f"{IG}/StructureDefinition/backport-payload-content"
SIGNATURE_HEADER = "X-Careplan-Signature"
CONTENTS = ("empty", "id-only", "full-resource")


@dataclass(frozen=True)
class Focus:
    """A focus resource at the version an event is about (None body: a deletion)."""

    body: Json | None
    deleted: bool = False


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for `body`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(body: bytes, secret: str, header: str) -> bool:
    """What a receiver does (the tests, and the README's example)."""
    return hmac.compare_digest(sign(body, secret), header)


def _event_part(item: Numbered, content: str, base: str) -> Json:
    parts: list[Json] = [
        {"name": "event-number", "valueString": str(item.number)},
        {"name": "timestamp", "valueInstant": format_instant(item.occurred)},
    ]
    if content != "empty":
        event = item.event
        focus = f"{base}/{event.focus_type}/{event.focus_id}"
        parts.append({"name": "focus", "valueReference": {"reference": focus}})
        if event.patient_id:
            patient = {"reference": f"{base}/Patient/{event.patient_id}"}
            parts.append({"name": "additional-context", "valueReference": patient})
    return {"name": "notification-event", "part": parts}


def status_parameters(
    sub_id: str,
    topic: str,
    status: str,
    kind: str,
    since_start: int,
    events: Sequence[Numbered],
    content: str,
    base: str,
    error: str | None = None,
) -> Json:
    """The subscription status (R4: Parameters) that opens every notification."""
    parameters: list[Json] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub_id}"}}
    ]
    if content != "empty":  # the IG: SHOULD NOT be present with empty content
        parameters.append({"name": "topic", "valueCanonical": TOPICS[topic].url})
    parameters += [
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since_start)},
    ]
    parameters += [_event_part(item, content, base) for item in events]
    if error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def _focus_entry(item: Numbered, focus: Focus | None, content: str, base: str) -> Json:
    event = item.event
    url = f"{base}/{event.focus_type}/{event.focus_id}"
    if event.deleted or (focus is not None and focus.deleted):
        request, status = {"method": "DELETE", "url": f"{event.focus_type}/{event.focus_id}"}, "204"
    elif event.topic in TIMED:  # nothing was written: the window's time came
        request, status = {"method": "GET", "url": f"{event.focus_type}/{event.focus_id}"}, "200"
    elif event.focus_version == 1:
        request, status = {"method": "POST", "url": event.focus_type}, "201"
    else:
        request, status = {"method": "PUT", "url": f"{event.focus_type}/{event.focus_id}"}, "200"
    entry: Json = {"fullUrl": url}
    if content == "full-resource" and focus is not None and focus.body is not None:
        entry["resource"] = focus.body
    entry["request"] = request
    entry["response"] = {"status": status}
    return entry


def bundle(
    sub_id: str,
    topic: str,
    status: str,
    kind: str,
    since_start: int,
    events: Sequence[Numbered],
    content: str,
    base: str,
    now: datetime,
    foci: dict[tuple[str, str, int | None], Focus] | None = None,
    error: str | None = None,
) -> Json:
    """A notification Bundle (history). `foci`: the focus resources by (type, id, version),
    for full-resource content (and to tell deletions apart)."""
    parameters = status_parameters(
        sub_id, topic, status, kind, since_start, events, content, base, error
    )
    entries: list[Json] = [
        {
            "fullUrl": f"urn:uuid:{parameters['id']}",
            "resource": parameters,
            "request": {"method": "GET", "url": f"{base}/Subscription/{sub_id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        seen: set[tuple[str, str, int | None]] = set()
        for item in events:
            e = item.event
            key = (e.focus_type, e.focus_id, e.focus_version)
            if key in seen:
                continue
            seen.add(key)
            entries.append(_focus_entry(item, (foci or {}).get(key), content, base))
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": format_instant(now),
        "entry": entries,
    }


def encode(body: Json) -> bytes:
    return orjson.dumps(body)
