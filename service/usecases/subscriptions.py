"""Subscriptions (R4 Subscriptions Backport IG): create, update, $status, $events.

A Subscription names a topic (service/notify/topics.py) and a rest-hook endpoint. Creating one
stores it ``requested`` (or ``off``); the delivery worker's handshake then makes it ``active``,
or ``error`` when the endpoint does not accept it. What the service does not support is a 422
naming it. The signing secret comes in the SECRET_EXTENSION on the channel; it is kept in the
subscription's state row and taken out of the resource, so no read, search, history or
notification ever shows it. An update without the extension keeps the secret; with it, it
replaces it.

Statuses on update: ``off`` stops it; ``requested`` asks for a new handshake (how a subscriber
recovers one in ``error``); ``active`` keeps an active subscription active unless its endpoint
changed (then a handshake first).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.audit.subjects import version_reference
from service.auth.permissions import Need
from service.fhir.dates import utc_now
from service.fhir.errors import FhirError, Issue, fhir_error
from service.notify import endpoints, notifications, state
from service.notify import subscription as spec_of
from service.notify.notifications import CONTENTS
from service.notify.subscription import Spec
from service.notify.topics import TOPICS, Topic
from service.notify.worker import foci_of
from service.store.errors import NotFound
from service.store.repository import Stored, Tx
from service.store.runner import Store
from service.usecases import access
from service.usecases.access import Caller
from service.usecases.audit_trail import Audit, Touched, record
from service.usecases.audit_trail import read as audited_read

Json = dict[str, Any]
MAX_EVENTS = 1000  # per $events answer; page on with eventsSinceNumber
STATUS_OPERATION = spec_of.STATUS_OPERATION
EVENTS_OPERATION = spec_of.EVENTS_OPERATION
PROFILE = spec_of.PROFILE
TOPIC_EXTENSION = spec_of.TOPIC_EXTENSION
BACKPORT_SERVER = f"{spec_of.IG}/CapabilityStatement/backport-subscription-server-r4"


@dataclass(frozen=True)
class Rules:
    endpoints: tuple[str, ...]  # CAREPLAN_SUBSCRIPTION_ENDPOINTS
    base_url: str  # this server's FHIR base, as the subscriber called it


def rules(endpoint_setting: str, base: str) -> Rules:
    return Rules(endpoints.parse_prefixes(endpoint_setting), base)


def _unsupported(problems: Sequence[spec_of.Problem]) -> FhirError:
    issues = [Issue("not-supported", p.message, expression=(p.expression,)) for p in problems]
    return FhirError(422, issues)


def checked(body: Json, rules: Rules) -> Spec:
    spec, problems = spec_of.read(body, rules.endpoints)
    if spec is None:
        raise _unsupported(problems)
    return spec


def check_compartment(spec: Spec, patient: str | None) -> None:
    """A caller limited to one patient's compartment (a ``patient/`` token: `patient` is its
    patient id) may only subscribe to events about that patient: the filter criteria must
    say ``patient=Patient/<its id>``. None: the caller is not limited."""
    if patient is None:
        return
    allowed = spec.criteria.patients()
    if allowed is None or allowed != frozenset({patient}):
        raise fhir_error(
            403,
            "forbidden",
            "A patient-context token may only subscribe to its own patient's events: add the "
            f"filter criteria patient=Patient/{patient}",
            "Subscription.criteria.extension",
        )


def _row(stored: Stored, spec: Spec, status: str, base: str) -> state.SubscriptionRow:
    return state.SubscriptionRow(
        stored.id, stored.version, spec.topic.name, spec.filters, status, base, spec.heartbeat
    )


def _status_for_update(
    asked: str, current: state.SubscriptionRow | None, same_endpoint: bool
) -> str:
    if asked == "off":
        return "off"
    if current is None or asked == "requested" or not same_endpoint:
        return "requested"
    if current.status == asked and asked in ("active", "error"):
        return asked  # the subscriber sent back what it read
    return "requested"


def check_content_access(topic: Topic, content: str, caller: Caller) -> None:
    """``full-resource`` carries the events' focus resources (a decision, a CarePlan): the
    caller must be allowed to read that type, or Subscription scopes alone would read them."""
    if content == "full-resource":
        access.require(caller, [Need(topic.resource, "r")])


def _store(
    tx: Tx,
    body: Json,
    rules: Rules,
    patient: str | None,
    resource_id: str | None,
    if_match: int | None,
    now: datetime,
    caller: Caller = None,
) -> tuple[Stored, bool]:
    spec = checked(body, rules)
    check_compartment(spec, patient)
    check_content_access(spec.topic, spec.content, caller)
    current = tx.get("Subscription", resource_id, lock=True) if resource_id else None
    row = state.get(tx, resource_id) if resource_id else None
    if current is not None and current.body is not None and not current.deleted:
        before, _ = spec_of.read(current.body)
        if before is not None:
            check_compartment(before, patient)  # no taking over another's subscription
        same = before is not None and before.endpoint == spec.endpoint
        status = _status_for_update(spec.status, row, same)
    else:
        status = "off" if spec.status == "off" else "requested"
    if spec.secret is None and row is None:
        raise fhir_error(
            422,
            "business-rule",
            "A Subscription needs a signing secret (32-255 characters) in the extension "
            f"{spec_of.SECRET_EXTENSION} on its channel: every notification is signed with it "
            "(HMAC-SHA256, header X-Careplan-Signature)",
            "Subscription.channel.extension",
        )
    kept = spec_of.with_status(spec_of.without_secret(body), status)
    if resource_id is None:
        stored, created = tx.create(kept), True
    else:
        stored, created = tx.update(kept, resource_id, if_match)
    state.save(tx, _row(stored, spec, status, rules.base_url), spec.secret, now)
    return stored, created


async def create(
    store: Store,
    body: Json,
    rules: Rules,
    patient: str | None,
    audit: Audit | None = None,
    caller: Caller = None,
) -> Stored:
    """POST /Subscription: stored ``requested``; the worker's handshake follows."""
    now = utc_now().replace(tzinfo=None)

    def unit(tx: Tx) -> Stored:
        stored, _ = _store(tx, body, rules, patient, None, None, now, caller)
        record(tx, audit, Touched.of([stored.body]))
        return stored

    return await store.arun(unit)


async def update(
    store: Store,
    resource_id: str,
    body: Json,
    if_match: int | None,
    rules: Rules,
    patient: str | None,
    audit: Audit | None = None,
    caller: Caller = None,
) -> tuple[Stored, bool]:
    """PUT /Subscription/{id}; returns (stored, created)."""
    now = utc_now().replace(tzinfo=None)

    def unit(tx: Tx) -> tuple[Stored, bool]:
        stored, created = _store(tx, body, rules, patient, resource_id, if_match, now, caller)
        record(tx, audit, Touched.of([stored.body]))
        return stored, created

    return await store.arun(unit)


def deleted(tx: Tx, stored: Stored) -> None:
    """A deleted Subscription is off: no more events are counted or sent."""
    state.set_status(tx, stored.id, stored.version, "off")


# --- $status and $events -----------------------------------------------------------------------


def _subscription(
    tx: Tx, resource_id: str, patient: str | None
) -> tuple[Stored, state.SubscriptionRow, Spec]:
    """The subscription, its state and spec; 404 also for one a patient-limited caller
    (``patient``) may not see: one not filtered to that patient alone."""
    stored = tx.read("Subscription", resource_id)
    row = state.get(tx, resource_id)
    spec, _ = spec_of.read(stored.body or {})
    if row is None or spec is None:
        raise NotFound(f"Subscription/{resource_id} has no notification state")
    if patient is not None and spec.criteria.patients() != frozenset({patient}):
        raise NotFound(f"Subscription/{resource_id} is not known")
    return stored, row, spec


def _touched(resource_ids: list[str]) -> Touched:
    return Touched(tuple(version_reference("Subscription", i, None) for i in resource_ids))


def _status_entry(tx: Tx, resource_id: str, base: str, patient: str | None) -> Json:
    stored, row, spec = _subscription(tx, resource_id, patient)
    error = (stored.body or {}).get("error") if row.status == "error" else None
    parameters = notifications.status_parameters(
        resource_id,
        row.topic,
        row.status,
        "query-status",
        row.events_since_start,
        [],
        spec.content,
        base,
        error,
    )
    return {
        "fullUrl": f"urn:uuid:{parameters['id']}",
        "resource": parameters,
        "search": {"mode": "match"},
    }


async def status(
    store: Store,
    resource_ids: list[str] | None,
    base: str,
    patient: str | None = None,
    audit: Audit | None = None,
) -> Json:
    """$status: a searchset of one status Parameters per subscription (all the caller may
    see when no ids; ``patient``: the caller is limited to that patient's subscriptions)."""

    def unit(tx: Tx) -> Json:
        if resource_ids is not None:
            entries = [_status_entry(tx, i, base, patient) for i in resource_ids]
        else:
            entries = []
            for found in tx.find("Subscription", [], limit=MAX_EVENTS):
                try:
                    entries.append(_status_entry(tx, found["id"], base, patient))
                except NotFound:  # not the caller's, or no notification state
                    continue
        bundle: Json = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
        if entries:
            bundle["entry"] = entries
        return bundle

    def touched(bundle: Json) -> Touched:
        return _touched([e["resource"]["id"] for e in bundle.get("entry", ())])

    return await audited_read(store, audit, unit, touched)


def _number(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise fhir_error(400, "invalid", f"{name} must be an event number", name)
    return int(value)


async def events(
    store: Store,
    resource_id: str,
    since_text: str | None,
    until_text: str | None,
    content: str | None,
    base: str,
    patient: str | None = None,
    audit: Audit | None = None,
    caller: Caller = None,
) -> Json:
    """$events: the subscription's events from `eventsSinceNumber` to `eventsUntilNumber`
    (at most MAX_EVENTS), as a history Bundle like the notifications that carried them:
    the same numbers, timestamps and foci at the same versions."""
    since = _number(since_text, "eventsSinceNumber") or 1
    until = _number(until_text, "eventsUntilNumber")
    if content is not None and content not in CONTENTS:
        raise fhir_error(400, "invalid", f"content must be one of {', '.join(CONTENTS)}", "content")

    def unit(tx: Tx) -> Json:
        _, row, spec = _subscription(tx, resource_id, patient)
        wanted = content or spec.content
        check_content_access(spec.topic, wanted, caller)
        found = state.events(tx, resource_id, since, until, MAX_EVENTS)
        return notifications.bundle(
            resource_id,
            row.topic,
            row.status,
            "query-event",
            row.events_since_start,
            found,
            wanted,
            base,
            utc_now(),
            foci_of(tx, found, wanted),
        )

    return await audited_read(store, audit, unit, lambda _: _touched([resource_id]))


def topics_listed() -> list[Topic]:
    """The topics, for the CapabilityStatement."""
    return list(TOPICS.values())
