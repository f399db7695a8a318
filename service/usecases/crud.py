"""The CRUD use cases: read, vread, create, update, delete, search and history of any stored
type, and the same writes as steps of a larger unit of work (a transaction Bundle's entries).

A write checks its type's business rules first (a CarePlan that claims the protocol must not
contradict it, a pain score must be 0-10) and, once stored, lets a session it completes be
decided: ``session_observations.decide_completed_sessions``.

Each takes the caller (``access.Caller``): what it reads is held against the caller's permits
(404 when it may not see it), what it writes too (403), searches and history are narrowed.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from service.audit import events as audit_events
from service.audit.subjects import queried_patients, version_reference
from service.auth.permissions import InsufficientScope, Interaction, interaction_need
from service.fhir import bundles
from service.fhir.errors import fhir_error
from service.fhir.search import SearchLimits, SearchQuery, parse_search
from service.notify import outbox
from service.notify.outbox import Change
from service.store.errors import Gone, NotFound
from service.store.repository import HistoryEntry, Stored, Tx
from service.store.runner import Store
from service.usecases import access, enrolment, session_observations, subscriptions
from service.usecases.access import Caller
from service.usecases.audit_trail import Audit, Touched, record
from service.usecases.audit_trail import read as audited_read

Json = dict[str, Any]

# Types the service itself changes with its decisions (a plan put on hold, stopped or moved up a
# level; a retry Task completed): a blind PUT of a copy read earlier would undo such a change
# unseen. Their updates must name the version they were read at (the CapabilityStatement says
# so with versioning "versioned-update"); they are created with POST, not with PUT.
VERSIONED_UPDATE_TYPES = frozenset({"CarePlan", "Task"})


def parse_if_none_exist(
    resource_type: str, criteria: str, limits: SearchLimits | None = None
) -> SearchQuery:
    """The search an If-None-Exist header (or a Bundle entry's ifNoneExist) names; 400 when
    it names none (an empty one too: it must not turn into an unconditional create)."""
    criteria = criteria.strip()
    text = criteria.split("?", 1)[1] if "?" in criteria else criteria
    items = parse_qsl(text, keep_blank_values=True)
    if not items:
        raise fhir_error(400, "invalid", "If-None-Exist has no search criteria")
    # Strict: a criterion the server ignored would silently widen the match.
    query = parse_search(
        resource_type, items, default_count=2, max_count=2, strict=True, limits=limits
    )
    if not query.clauses:
        raise fhir_error(400, "invalid", "If-None-Exist has no search criteria")
    return query


def check_writable(resource_type: str) -> None:
    """405 for a type the API never writes: AuditEvents come only from the service itself, so
    the trail cannot be forged, changed or erased through the API."""
    if resource_type == audit_events.RESOURCE_TYPE:
        raise fhir_error(
            405,
            "not-supported",
            "AuditEvent is written by the service only: it cannot be created, updated or "
            "deleted through the API",
        )


def check_business_rules(tx: Tx, body: Json) -> None:
    """422 when a resource breaks a rule of the protocol; may read through the Tx."""
    if body["resourceType"] == "CarePlan":
        enrolment.validate_care_plan(tx, body)
    elif body["resourceType"] == "Observation":
        session_observations.validate_pain_observation(body)
    elif body["resourceType"] == "Subscription":
        # Its channel, endpoint allow-list and signing secret are checked, and kept out of
        # the stored resource, by the Subscription routes (usecases/subscriptions.py).
        raise fhir_error(
            422,
            "not-supported",
            "Subscriptions are created and updated with POST /fhir/Subscription and "
            "PUT /fhir/Subscription/{id}, not inside a batch or transaction",
            "Subscription",
        )


# --- writes inside a unit of work --------------------------------------------------------------


def create_in(
    tx: Tx,
    body: Json,
    if_none_exist: str | None = None,
    resource_id: str | None = None,
    limits: SearchLimits | None = None,
    *,
    caller: Caller,
) -> tuple[Stored, bool]:
    """Create (conditionally with If-None-Exist criteria); returns (stored, created)."""
    check_writable(body["resourceType"])
    need = interaction_need(Interaction.CREATE, body["resourceType"])
    found = access.permits(caller, need)
    access.check_writable(caller, need, body)
    check_business_rules(tx, body)
    if if_none_exist is not None:
        query = parse_if_none_exist(body["resourceType"], if_none_exist, limits)
        if found is not None:  # matches the caller may not see must not show (nor count)
            query.access = access.search_groups(body["resourceType"], found)
        stored, created = tx.create_conditional(body, query, resource_id)
        if not created and not access.admits(found, stored.body):
            raise InsufficientScope(
                (need,), "If-None-Exist matches a resource outside what the token allows"
            )
    else:
        stored, created = tx.create(body, resource_id), True
    if created:
        outbox.record(tx, [Change(stored, created=True)])
        # An id the server assigned just now: no stored panel can list it as a member yet.
        fresh_id = resource_id is None
        session_observations.decide_completed_sessions(
            tx, [stored], fresh_ids=fresh_id, caller=caller
        )
    return stored, created


def check_if_match_required(resource_type: str, if_match: int | None, where: str | None) -> None:
    """428 for an update of a VERSIONED_UPDATE_TYPES type without If-Match."""
    if if_match is None and resource_type in VERSIONED_UPDATE_TYPES:
        raise fhir_error(
            428,
            "required",
            f"An update of a {resource_type} needs If-Match with the version it was read at "
            f'(W/"<versionId>"): the service changes {resource_type}s with its decisions, '
            "and a blind update would undo them. Create one with POST.",
            where,
        )


def update_in(
    tx: Tx,
    body: Json,
    resource_id: str,
    if_match: int | None,
    where: str | None = None,
    *,
    caller: Caller,
) -> tuple[Stored, bool]:
    """Update, or create with the client's id; returns (stored, created). ``where`` names the
    If-Match's place in a Bundle entry (REST: the header, no element). A limited caller must
    be allowed both the stored version and the new one: otherwise an update could take a
    resource out of another caller's reach, or into its own."""
    check_writable(body["resourceType"])
    check_if_match_required(body["resourceType"], if_match, where)
    need = interaction_need(Interaction.UPDATE, body["resourceType"])
    found = access.permits(caller, need)
    if found is not None:
        access.check_writable(caller, need, body)
        current = tx.get(body["resourceType"], resource_id)
        if current is not None and not current.deleted:
            access.check_writable(caller, need, current.body)
    check_business_rules(tx, body)
    stored, created = tx.update(body, resource_id, if_match)
    outbox.record(tx, [Change(stored, created=created)])
    session_observations.decide_completed_sessions(tx, [stored], caller=caller)
    return stored, created


def delete_in(tx: Tx, resource_type: str, resource_id: str, *, caller: Caller) -> Stored | None:
    """The deletion's version, or None when the resource was deleted already."""
    check_writable(resource_type)
    need = interaction_need(Interaction.DELETE, resource_type)
    if access.permits(caller, need) is not None:
        current = tx.get(resource_type, resource_id)
        if current is not None and not current.deleted:
            access.check_writable(caller, need, current.body)
    # What a deleted CarePlan was about (its patient) goes into its careplan-changed event.
    before = tx.get(resource_type, resource_id, lock=True) if resource_type == "CarePlan" else None
    stored = tx.delete(resource_type, resource_id)
    if stored is not None:
        previous = before.body if before is not None else None
        outbox.record(tx, [Change(stored, previous=previous)])
        if resource_type == "Subscription":
            subscriptions.deleted(tx, stored)
    return stored


def read_in(
    tx: Tx,
    resource_type: str,
    resource_id: str,
    caller: Caller,
    interaction: Interaction = Interaction.READ,
) -> Stored:
    """The current version, 404 when the caller may not see it. A deleted resource is 410 to
    a caller who could see its last version, else 404 as well."""
    try:
        stored = tx.read(resource_type, resource_id)
    except Gone:
        if access.limited(caller, interaction_need(interaction, resource_type)) is not None:
            found = tx.get(resource_type, resource_id)
            version = found.version - 1 if found else 0
            last = _version_body(tx, resource_type, resource_id, version)
            access.check_readable(caller, interaction, resource_type, resource_id, last)
        raise
    access.check_readable(caller, interaction, resource_type, resource_id, stored.body)
    return stored


def _version_body(tx: Tx, resource_type: str, resource_id: str, version: int) -> Json | None:
    if version < 1:
        return None
    try:
        return tx.vread(resource_type, resource_id, version).body
    except (NotFound, Gone):
        return None


# --- the use cases, one unit of work each ------------------------------------------------------


def _touched(stored: Stored) -> Touched:
    return Touched((version_reference(stored.type, stored.id, stored.version),), (stored.body,))


async def read(
    store: Store, resource_type: str, resource_id: str, caller: Caller, audit: Audit | None = None
) -> Stored:
    return await audited_read(
        store, audit, lambda tx: read_in(tx, resource_type, resource_id, caller), _touched
    )


async def vread(
    store: Store,
    resource_type: str,
    resource_id: str,
    version: int,
    caller: Caller,
    audit: Audit | None = None,
) -> HistoryEntry:
    def unit(tx: Tx) -> HistoryEntry:
        entry = tx.vread(resource_type, resource_id, version)
        access.check_readable(caller, Interaction.VREAD, resource_type, resource_id, entry.body)
        return entry

    def touched(entry: HistoryEntry) -> Touched:
        return Touched((version_reference(entry.type, entry.id, entry.version),), (entry.body,))

    return await audited_read(store, audit, unit, touched)


# ``long``: the body is large, so storing it may take long (Store.arun).


async def create(
    store: Store,
    body: Json,
    if_none_exist: str | None,
    caller: Caller,
    limits: SearchLimits | None = None,
    audit: Audit | None = None,
    *,
    long: bool = False,
) -> tuple[Stored, bool]:
    def unit(tx: Tx) -> tuple[Stored, bool]:
        stored, created = create_in(tx, dict(body), if_none_exist, limits=limits, caller=caller)
        record(tx, audit, _touched(stored))
        return stored, created

    return await store.arun(unit, long=long)


async def update(
    store: Store,
    body: Json,
    resource_id: str,
    if_match: int | None,
    caller: Caller,
    audit: Audit | None = None,
    *,
    long: bool = False,
) -> tuple[Stored, bool]:
    check_writable(body["resourceType"])
    check_if_match_required(body["resourceType"], if_match, None)  # before a unit of work

    def unit(tx: Tx) -> tuple[Stored, bool]:
        stored, created = update_in(tx, body, resource_id, if_match, caller=caller)
        record(tx, audit, _touched(stored))
        return stored, created

    return await store.arun(unit, long=long)


async def delete(
    store: Store,
    resource_type: str,
    resource_id: str,
    caller: Caller,
    audit: Audit | None = None,
) -> Stored | None:
    def unit(tx: Tx) -> Stored | None:
        # The version deleted, for the patients it concerned (the deletion has no body).
        before = tx.get(resource_type, resource_id) if audit is not None else None
        stored = delete_in(tx, resource_type, resource_id, caller=caller)
        version = stored.version if stored else None
        reference = version_reference(resource_type, resource_id, version)
        record(tx, audit, Touched((reference,), (before.body if before else None,)))
        return stored

    return await store.arun(unit)


def search_in(tx: Tx, query: SearchQuery, base: str, path: str, caller: Caller) -> Json:
    """A searchset Bundle (or just its total for ``_summary=count``), of what the caller may
    see: the permits narrow the query, and ``_include``d resources it may not read are left
    out."""
    access.restrict_search(caller, query)
    if query.summary == "count":
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": tx.count(query),
            "link": [{"relation": "self", "url": bundles.search_url(base, path, query)}],
        }
    page = tx.search(query)
    if page.included and caller is not None:
        may_read = access.readable(caller)
        page.included = [s for s in page.included if may_read(s.type, s.body)]
    return bundles.searchset(base, query, page, path)


async def search(
    store: Store, query: SearchQuery, base: str, caller: Caller, audit: Audit | None = None
) -> Json:
    """A search; its event names the patients of the criteria and of every resource the page
    holds (BALP Query: the request itself is the event's Query entity)."""

    def touched(bundle: Json) -> Touched:
        bodies = tuple(e.get("resource") for e in bundle.get("entry", ()))
        patients = queried_patients(query.resource_type, query.link_params)
        return Touched((), bodies, tuple(patients))

    # Any search may take long: a page of up to max_page_size bodies, includes, scans.
    return await audited_read(
        store,
        audit,
        lambda tx: search_in(tx, query, base, query.resource_type, caller),
        touched,
        long=True,
    )


# A page of history for a limited caller reads at most this many pages' worth of entries to
# fill itself; the next link goes on from where it stopped, so nothing is skipped.
_HISTORY_SCAN_PAGES = 10


async def history(
    store: Store,
    base: str,
    path: str,
    target: tuple[str | None, str | None],
    since: datetime | None,
    count: int,
    cursor: int | None,
    link_params: list[tuple[str, str]],
    caller: Caller,
    audit: Audit | None = None,
) -> Json:
    """A history Bundle of the system, a type or one resource (``target``), newest first.
    For a limited caller, entries it may not read are left out (and the total, which would
    count them, is not given)."""
    resource_type, resource_id = target

    def unit(tx: Tx) -> Json:
        if resource_type and resource_id:
            _check_instance_history(tx, resource_type, resource_id, caller)
        shows = access.history_filter(caller, resource_type)
        if shows is None:
            entries, after, total = tx.history(resource_type, resource_id, since, count, cursor)
            return bundles.history(base, path, entries, total, link_params, after)
        kept: list[HistoryEntry] = []
        next_seq: int | None = cursor
        for _ in range(_HISTORY_SCAN_PAGES):
            entries, next_seq, _total = tx.history(
                resource_type, resource_id, since, count, next_seq
            )
            for index, entry in enumerate(entries):
                if _shown(tx, shows, entry):
                    kept.append(entry)
                if len(kept) == count:
                    more = index < len(entries) - 1 or next_seq is not None
                    next_seq = entry.seq if more else None
                    break
            if len(kept) == count or next_seq is None:
                break
        return bundles.history(base, path, kept, None, link_params, next_seq)

    def touched(bundle: Json) -> Touched:
        bodies = tuple(e.get("resource") for e in bundle.get("entry", ()))
        if resource_type and resource_id:
            return Touched((version_reference(resource_type, resource_id, None),), bodies)
        return Touched((), bodies)

    # A page of bodies, as a search.
    return await audited_read(store, audit, unit, touched, long=True)


def _check_instance_history(tx: Tx, resource_type: str, resource_id: str, caller: Caller) -> None:
    """404 for a resource never stored, or one the caller may not see (a deleted one by its
    last version); a deleted resource still has its history."""
    current = tx.get(resource_type, resource_id)
    if current is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    if access.limited(caller, interaction_need(Interaction.HISTORY, resource_type)) is not None:
        body = current.body
        if current.deleted:
            body = _version_body(tx, resource_type, resource_id, current.version - 1)
        access.check_readable(caller, Interaction.HISTORY, resource_type, resource_id, body)


def _shown(tx: Tx, shows: Callable[[str, Json | None], bool], entry: HistoryEntry) -> bool:
    """A deletion carries no body: it is shown when the version it deleted is."""
    body = entry.body
    if entry.deleted:
        body = _version_body(tx, entry.type, entry.id, entry.version - 1)
    return shows(entry.type, body)
