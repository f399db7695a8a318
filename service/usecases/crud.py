"""The CRUD use cases: read, vread, create, update, delete, search and history of any stored
type, and the same writes as steps of a larger unit of work (a transaction Bundle's entries).

A write checks its type's business rules first (a CarePlan that claims the protocol must not
contradict it, a pain score must be 0-10) and, once stored, lets a session it completes be
decided: ``session_observations.decide_completed_sessions``.
"""

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from service.fhir import bundles
from service.fhir.errors import fhir_error
from service.fhir.search import SearchLimits, SearchQuery, parse_search
from service.store.repository import HistoryEntry, Stored, Tx
from service.store.runner import Store
from service.usecases import enrolment, session_observations

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


def check_business_rules(tx: Tx, body: Json) -> None:
    """422 when a resource breaks a rule of the protocol; may read through the Tx."""
    if body["resourceType"] == "CarePlan":
        enrolment.validate_care_plan(tx, body)
    elif body["resourceType"] == "Observation":
        session_observations.validate_pain_observation(body)


# --- writes inside a unit of work --------------------------------------------------------------


def create_in(
    tx: Tx,
    body: Json,
    if_none_exist: str | None = None,
    resource_id: str | None = None,
    limits: SearchLimits | None = None,
) -> tuple[Stored, bool]:
    """Create (conditionally with If-None-Exist criteria); returns (stored, created)."""
    check_business_rules(tx, body)
    if if_none_exist is not None:
        query = parse_if_none_exist(body["resourceType"], if_none_exist, limits)
        stored, created = tx.create_conditional(body, query, resource_id)
    else:
        stored, created = tx.create(body, resource_id), True
    if created:
        # An id the server assigned just now: no stored panel can list it as a member yet.
        fresh_id = resource_id is None
        session_observations.decide_completed_sessions(tx, [stored], fresh_ids=fresh_id)
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
    tx: Tx, body: Json, resource_id: str, if_match: int | None, where: str | None = None
) -> tuple[Stored, bool]:
    """Update, or create with the client's id; returns (stored, created). ``where`` names the
    If-Match's place in a Bundle entry (REST: the header, no element)."""
    check_if_match_required(body["resourceType"], if_match, where)
    check_business_rules(tx, body)
    stored, created = tx.update(body, resource_id, if_match)
    session_observations.decide_completed_sessions(tx, [stored])
    return stored, created


def delete_in(tx: Tx, resource_type: str, resource_id: str) -> Stored | None:
    """The deletion's version, or None when the resource was deleted already."""
    return tx.delete(resource_type, resource_id)


# --- the use cases, one unit of work each ------------------------------------------------------


async def read(store: Store, resource_type: str, resource_id: str) -> Stored:
    return await store.arun(lambda tx: tx.read(resource_type, resource_id), read_only=True)


async def vread(store: Store, resource_type: str, resource_id: str, version: int) -> HistoryEntry:
    return await store.arun(
        lambda tx: tx.vread(resource_type, resource_id, version), read_only=True
    )


# ``long``: the body is large, so storing it may take long (Store.arun).


async def create(
    store: Store,
    body: Json,
    if_none_exist: str | None,
    limits: SearchLimits | None = None,
    *,
    long: bool = False,
) -> tuple[Stored, bool]:
    return await store.arun(
        lambda tx: create_in(tx, dict(body), if_none_exist, limits=limits), long=long
    )


async def update(
    store: Store, body: Json, resource_id: str, if_match: int | None, *, long: bool = False
) -> tuple[Stored, bool]:
    check_if_match_required(body["resourceType"], if_match, None)  # before a unit of work
    return await store.arun(lambda tx: update_in(tx, body, resource_id, if_match), long=long)


async def delete(store: Store, resource_type: str, resource_id: str) -> Stored | None:
    return await store.arun(lambda tx: delete_in(tx, resource_type, resource_id))


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


async def search(store: Store, query: SearchQuery, base: str) -> Json:
    # Any search may take long: a page of up to max_page_size bodies, includes, scans.
    return await store.arun(
        lambda tx: search_in(tx, query, base, query.resource_type), read_only=True, long=True
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
) -> Json:
    """A history Bundle of the system, a type or one resource (``target``), newest first."""
    resource_type, resource_id = target

    def unit(tx: Tx) -> Json:
        if resource_type and resource_id:
            tx.get(resource_type, resource_id) or tx.read(resource_type, resource_id)
        entries, next_seq, total = tx.history(resource_type, resource_id, since, count, cursor)
        return bundles.history(base, path, entries, total, link_params, next_seq)

    return await store.arun(unit, read_only=True, long=True)  # a page of bodies, as a search
