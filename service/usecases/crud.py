"""The CRUD use cases: read, vread, create, update, delete, search and history of any stored
type, and the same writes as steps of a larger unit of work (a transaction Bundle's entries).

A write checks its type's business rules first (a CarePlan that claims the protocol must not
contradict it, a pain score must be 0-10) and, once stored, lets a session it completes be
decided: ``session_observations.decide_completed_sessions``.
"""

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from service.audit import events as audit_events
from service.audit.subjects import queried_patients, version_reference
from service.fhir import bundles
from service.fhir.errors import fhir_error
from service.fhir.search import SearchQuery, parse_search
from service.store.repository import HistoryEntry, Stored, Tx
from service.store.runner import Store
from service.usecases import enrolment, session_observations
from service.usecases.audit_trail import Audit, Touched, record
from service.usecases.audit_trail import read as audited_read

Json = dict[str, Any]


def parse_if_none_exist(
    resource_type: str, criteria: str
) -> tuple[SearchQuery, list[tuple[str, str]]]:
    text = criteria.split("?", 1)[1] if "?" in criteria else criteria
    items = parse_qsl(text, keep_blank_values=True)
    if not items:
        raise fhir_error(400, "invalid", "If-None-Exist has no search criteria")
    # Strict: a criterion the server ignored would silently widen the match.
    query = parse_search(resource_type, items, default_count=2, max_count=2, strict=True)
    if not query.clauses:
        raise fhir_error(400, "invalid", "If-None-Exist has no search criteria")
    return query, items


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


# --- writes inside a unit of work --------------------------------------------------------------


def create_in(
    tx: Tx, body: Json, if_none_exist: str | None = None, resource_id: str | None = None
) -> tuple[Stored, bool]:
    """Create (conditionally with If-None-Exist criteria); returns (stored, created)."""
    check_writable(body["resourceType"])
    check_business_rules(tx, body)
    if if_none_exist:
        query, items = parse_if_none_exist(body["resourceType"], if_none_exist)
        stored, created = tx.create_conditional(body, query, items, resource_id)
    else:
        stored, created = tx.create(body, resource_id), True
    if created:
        # An id the server assigned just now: no stored panel can list it as a member yet.
        fresh_id = resource_id is None
        session_observations.decide_completed_sessions(tx, [stored], fresh_ids=fresh_id)
    return stored, created


def update_in(tx: Tx, body: Json, resource_id: str, if_match: int | None) -> tuple[Stored, bool]:
    """Update, or create with the client's id; returns (stored, created)."""
    check_writable(body["resourceType"])
    check_business_rules(tx, body)
    stored, created = tx.update(body, resource_id, if_match)
    session_observations.decide_completed_sessions(tx, [stored])
    return stored, created


def delete_in(tx: Tx, resource_type: str, resource_id: str) -> Stored | None:
    """The deletion's version, or None when the resource was deleted already."""
    check_writable(resource_type)
    return tx.delete(resource_type, resource_id)


# --- the use cases, one unit of work each ------------------------------------------------------


def _touched(stored: Stored) -> Touched:
    return Touched((version_reference(stored.type, stored.id, stored.version),), (stored.body,))


async def read(
    store: Store, resource_type: str, resource_id: str, audit: Audit | None = None
) -> Stored:
    return await audited_read(
        store, audit, lambda tx: tx.read(resource_type, resource_id), _touched
    )


async def vread(
    store: Store, resource_type: str, resource_id: str, version: int, audit: Audit | None = None
) -> HistoryEntry:
    def touched(entry: HistoryEntry) -> Touched:
        return Touched((version_reference(entry.type, entry.id, entry.version),), (entry.body,))

    return await audited_read(
        store, audit, lambda tx: tx.vread(resource_type, resource_id, version), touched
    )


async def create(
    store: Store, body: Json, if_none_exist: str | None, audit: Audit | None = None
) -> tuple[Stored, bool]:
    def unit(tx: Tx) -> tuple[Stored, bool]:
        stored, created = create_in(tx, dict(body), if_none_exist)
        record(tx, audit, _touched(stored))
        return stored, created

    return await store.arun(unit)


async def update(
    store: Store, body: Json, resource_id: str, if_match: int | None, audit: Audit | None = None
) -> tuple[Stored, bool]:
    def unit(tx: Tx) -> tuple[Stored, bool]:
        stored, created = update_in(tx, body, resource_id, if_match)
        record(tx, audit, _touched(stored))
        return stored, created

    return await store.arun(unit)


async def delete(
    store: Store, resource_type: str, resource_id: str, audit: Audit | None = None
) -> Stored | None:
    def unit(tx: Tx) -> Stored | None:
        # The version deleted, for the patients it concerned (the deletion has no body).
        before = tx.get(resource_type, resource_id) if audit is not None else None
        stored = delete_in(tx, resource_type, resource_id)
        version = stored.version if stored else None
        reference = version_reference(resource_type, resource_id, version)
        record(tx, audit, Touched((reference,), (before.body if before else None,)))
        return stored

    return await store.arun(unit)


def search_in(tx: Tx, query: SearchQuery, base: str, path: str) -> Json:
    """A searchset Bundle (or just its total for ``_summary=count``)."""
    if query.summary == "count":
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": tx.count(query),
            "link": [{"relation": "self", "url": bundles.search_url(base, path, query)}],
        }
    return bundles.searchset(base, query, tx.search(query), path)


async def search(store: Store, query: SearchQuery, base: str, audit: Audit | None = None) -> Json:
    """A search; its event names the patients of the criteria and of every resource the page
    holds (BALP Query: the request itself is the event's Query entity)."""

    def touched(bundle: Json) -> Touched:
        bodies = tuple(e.get("resource") for e in bundle.get("entry", ()))
        patients = queried_patients(query.resource_type, query.link_params)
        return Touched((), bodies, tuple(patients))

    return await audited_read(
        store, audit, lambda tx: search_in(tx, query, base, query.resource_type), touched
    )


async def history(
    store: Store,
    base: str,
    path: str,
    target: tuple[str | None, str | None],
    since: datetime | None,
    count: int,
    cursor: int | None,
    link_params: list[tuple[str, str]],
    audit: Audit | None = None,
) -> Json:
    """A history Bundle of the system, a type or one resource (``target``), newest first."""
    resource_type, resource_id = target

    def unit(tx: Tx) -> Json:
        if resource_type and resource_id:
            tx.get(resource_type, resource_id) or tx.read(resource_type, resource_id)
        entries, next_seq, total = tx.history(resource_type, resource_id, since, count, cursor)
        return bundles.history(base, path, entries, total, link_params, next_seq)

    def touched(bundle: Json) -> Touched:
        bodies = tuple(e.get("resource") for e in bundle.get("entry", ()))
        if resource_type and resource_id:
            return Touched((version_reference(resource_type, resource_id, None),), bodies)
        return Touched((), bodies)

    return await audited_read(store, audit, unit, touched)
