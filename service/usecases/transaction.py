"""Batch and transaction Bundles (POST /fhir).

A transaction is one database transaction: entries run in the spec's order (DELETE, POST,
PUT, GET), ``urn:uuid:`` fullUrls are given ids first and every reference to them rewritten,
and any failing entry rolls the whole Bundle back. A batch runs each entry in its own unit of
work: one failing entry fails alone.

Every entry is held against the caller's scopes: a transaction with one entry its scopes do
not allow is refused whole (403) before anything runs, and one that writes outside the
caller's patient compartment or restriction rolls back; in a batch such an entry fails alone.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from service.audit.interactions import interaction_for, raw_query, searches
from service.audit.subjects import version_reference
from service.auth.permissions import InsufficientScope, Interaction, Need, interaction_need
from service.fhir.dates import format_instant
from service.fhir.errors import FhirError, Issue, fhir_error
from service.fhir.etags import parse_if_match
from service.fhir.ids import new_resource_id
from service.fhir.search import SearchLimits, parse_search
from service.fhir.search_params import SEARCH_PARAMS
from service.fhir.validate import validate_resource
from service.store.errors import RetryTransaction, StoreError
from service.store.repository import Stored, Tx
from service.store.runner import Store
from service.usecases import access, crud
from service.usecases.access import Caller
from service.usecases.audit_trail import Audit, Touched, record, record_alone

Json = dict[str, Any]
logger = logging.getLogger("careplan.transaction")
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
# A transaction with more entries than this, or with a GET (a search may read a page of up to
# max_page_size bodies), may take long: it runs off the event loop (Store.arun). An entry costs
# about 1 ms on the 2-core machine of bench/README.md.
INLINE_ENTRIES = 16


@dataclass(frozen=True)
class Paging:
    """The request's search settings, for the entries' searches and If-None-Exist criteria."""

    default_page_size: int
    max_page_size: int
    limits: SearchLimits | None = None


def _request_of(entry: Json, index: int) -> tuple[str, str]:
    request = entry.get("request")
    if not isinstance(request, dict):
        raise fhir_error(400, "required", "Entry has no request", f"Bundle.entry[{index}].request")
    method, url = request.get("method"), request.get("url")
    if method not in _ORDER or method in ("PATCH", "HEAD"):
        raise fhir_error(
            400, "not-supported", f"Method {method!r} is not supported", f"Bundle.entry[{index}]"
        )
    if not isinstance(url, str) or not url:
        raise fhir_error(400, "required", "Entry has no url", f"Bundle.entry[{index}].request.url")
    segments = _split_url(url)[0]
    if segments and segments[0] not in SEARCH_PARAMS:
        # As in REST, where /fhir/<type> has no route for such a type.
        raise fhir_error(
            404,
            "not-found",
            f"{segments[0]!r} is not a resource type this server serves",
            f"Bundle.entry[{index}].request.url",
        )
    return method, url


def _split_url(url: str) -> tuple[list[str], list[tuple[str, str]]]:
    parts = urlsplit(url)
    return [p for p in parts.path.strip("/").split("/") if p], parse_qsl(parts.query)


def _rewrite(value: Any, ids: dict[str, str]) -> Any:
    """Replace urn:uuid references with the ids the transaction assigned."""
    if isinstance(value, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(v, ids) for v in value]
    return value


def entry_need(entry: Json, index: int) -> Need:
    """The permission an entry needs: by its method, on the type its url names."""
    method, url = _request_of(entry, index)
    segments, _ = _split_url(url)
    resource_type = segments[0] if segments else ""
    if method == "GET":
        interaction = Interaction.READ if len(segments) == 2 else Interaction.SEARCH
    elif method == "POST":
        interaction = Interaction.CREATE
        body = entry.get("resource")
        if isinstance(body, dict) and isinstance(body.get("resourceType"), str):
            resource_type = body["resourceType"]
    elif method == "PUT":
        interaction = Interaction.UPDATE
    else:
        interaction = Interaction.DELETE
    return interaction_need(interaction, resource_type)


class EntryRunner:
    """Runs one Bundle entry inside a unit of work and answers its response entry."""

    def __init__(self, base: str, paging: Paging, caller: Caller) -> None:
        self.base = base
        self.paging = paging
        self.caller = caller

    def entry(self, tx: Tx, entry: Json, index: int, assigned: dict[int, str]) -> Json:
        method, url = _request_of(entry, index)
        segments, params = _split_url(url)
        where = f"Bundle.entry[{index}]"
        if method == "GET":
            return self._get(tx, segments, params, where)
        if method == "DELETE":
            if len(segments) != 2:
                raise fhir_error(400, "not-supported", "DELETE needs Type/id", where)
            stored = crud.delete_in(tx, segments[0], segments[1], caller=self.caller)
            return {
                "response": {"status": "204 No Content"} | ({"etag": stored.etag} if stored else {})
            }
        body = entry.get("resource")
        if not isinstance(body, dict):
            raise fhir_error(400, "required", f"{method} entry has no resource", where)
        if not segments or segments[0] != body.get("resourceType"):
            raise fhir_error(400, "invalid", "request.url does not match the resource type", where)
        if method == "POST":
            if_none_exist = entry["request"].get("ifNoneExist")
            body = {k: v for k, v in body.items() if k != "id"}
            stored, created = crud.create_in(
                tx, body, if_none_exist, assigned.get(index), self.paging.limits, caller=self.caller
            )
            if index in assigned and stored.id != assigned[index]:
                # Another writer created the match after our id mapping: redo the transaction.
                raise RetryTransaction()
            return self._written(stored, "201 Created" if created else "200 OK")
        if len(segments) != 2:
            raise fhir_error(400, "not-supported", "PUT needs Type/id", where)
        if body.get("id") != segments[1]:
            raise fhir_error(400, "invalid", "Resource id does not match request.url", where)
        if_match = entry["request"].get("ifMatch")
        version = parse_if_match(if_match, f"{where}.request.ifMatch") if if_match else None
        stored, created = crud.update_in(
            tx, body, segments[1], version, f"{where}.request.ifMatch", caller=self.caller
        )
        return self._written(stored, "201 Created" if created else "200 OK")

    def _written(self, stored: Stored, status: str) -> Json:
        return {
            "fullUrl": f"{self.base}/{stored.type}/{stored.id}",
            "resource": stored.body,
            "response": {
                "status": status,
                "location": f"{stored.type}/{stored.id}/_history/{stored.version}",
                "etag": stored.etag,
                "lastModified": format_instant(stored.last_updated),
            },
        }

    def _get(self, tx: Tx, segments: list[str], params: list[tuple[str, str]], where: str) -> Json:
        if len(segments) == 2:
            stored = crud.read_in(tx, segments[0], segments[1], self.caller)
            return {"resource": stored.body, "response": {"status": "200 OK", "etag": stored.etag}}
        if len(segments) == 1:
            query = parse_search(
                segments[0],
                params,
                default_count=self.paging.default_page_size,
                max_count=self.paging.max_page_size,
                base_url=self.base,
                limits=self.paging.limits,
            )
            return {
                "resource": crud.search_in(tx, query, self.base, segments[0], self.caller),
                "response": {"status": "200 OK"},
            }
        raise fhir_error(400, "not-supported", "GET supports Type/id and Type?query", where)


def _touched(entry: Json, result: Json) -> Touched:
    """What one entry read or wrote: its resource (a search: the patients of its matches)."""
    method = entry["request"]["method"]
    resource = result.get("resource")
    if method == "DELETE":
        segments = _split_url(entry["request"]["url"])[0]
        etag = (result.get("response") or {}).get("etag", "")
        version = etag.removeprefix('W/"').removesuffix('"') or None
        return Touched((version_reference(segments[0], segments[1], version),))
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        return Touched((), tuple(e.get("resource") for e in resource.get("entry", ())))
    return Touched.of([resource] if isinstance(resource, dict) else [])


def _all_touched(touched: list[Touched]) -> Touched:
    return Touched(
        tuple(r for t in touched for r in t.resources),
        tuple(b for t in touched for b in t.bodies),
        tuple(p for t in touched for p in t.patients),
    )


def _entry_audit(audit: Audit | None, entry: Any) -> Audit | None:
    """A batch entry's own audit: the interaction its request is, within the batch."""
    if audit is None:
        return None
    request = entry.get("request") if isinstance(entry, dict) else None
    method = request.get("method") if isinstance(request, dict) else None
    url = request.get("url") if isinstance(request, dict) else None
    if not isinstance(method, str) or not isinstance(url, str):
        interaction = replace(audit.circumstances.interaction, code="batch")
        return replace(audit, circumstances=replace(audit.circumstances, interaction=interaction))
    parts = urlsplit(url)
    interaction = replace(interaction_for(method, parts.path), in_batch=True)
    query = raw_query(parts.path.strip("/"), parts.query) if searches(interaction) else None
    circumstances = replace(audit.circumstances, interaction=interaction, query=query)
    return replace(audit, circumstances=circumstances)


def _assign_ids(
    tx: Tx, entries: list[Json], limits: SearchLimits | None
) -> tuple[dict[str, str], dict[int, str]]:
    """Give every POST entry an id up front (its match, for conditional creates)."""
    urn_to_ref: dict[str, str] = {}
    assigned: dict[int, str] = {}
    for index, entry in enumerate(entries):
        request = entry.get("request") or {}
        body = entry.get("resource")
        if request.get("method") != "POST" or not isinstance(body, dict):
            continue
        resource_type = body["resourceType"]
        new_id = new_resource_id()
        criteria = request.get("ifNoneExist")
        if criteria is not None:
            query = crud.parse_if_none_exist(resource_type, criteria, limits)
            matches = tx.search_ids(query, limit=2)
            if len(matches) == 1:
                new_id = matches[0]
        assigned[index] = new_id
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
            urn_to_ref[full_url] = f"{resource_type}/{new_id}"
    return urn_to_ref, assigned


def _unresolved_urns(value: Any, path: str) -> list[str]:
    """Paths of references still pointing at a urn:uuid after the transaction's rewrite."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item.startswith("urn:uuid:"):
                found.append(f"{path}.reference")
            else:
                found.extend(_unresolved_urns(item, f"{path}.{key}"))
        return found
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _unresolved_urns(item, f"{path}[{i}]")]
    return []


def _check_resolved(entries: list[Json]) -> None:
    for index, entry in enumerate(entries):
        for where in _unresolved_urns(entry.get("resource"), f"Bundle.entry[{index}].resource"):
            raise fhir_error(
                400, "invalid", "Reference to a urn:uuid that no entry of the Bundle creates", where
            )


def _check_distinct(entries: list[Json], assigned: dict[int, str]) -> None:
    """A transaction may not touch one resource twice in its DELETE, POST and PUT entries."""
    seen: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(entries):
        method = entry["request"]["method"]
        if method == "POST" and index in assigned:
            identity = (entry["resource"]["resourceType"], assigned[index])
        elif method in ("PUT", "DELETE"):
            segments = _split_url(entry["request"]["url"])[0]
            if len(segments) != 2:
                continue
            identity = (segments[0], segments[1])
        else:
            continue
        if identity in seen:
            raise fhir_error(
                400,
                "invalid",
                f"Entries {seen[identity]} and {index} both change {identity[0]}/{identity[1]}",
                f"Bundle.entry[{index}]",
            )
        seen[identity] = index


def _with_entry_prefix(exc: FhirError, index: int) -> FhirError:
    issues = [
        Issue(i.code, f"entry[{index}]: {i.diagnostics}", i.severity, i.expression)
        for i in exc.issues
    ]
    return FhirError(exc.status, issues)


def _validate_entries(entries: list[Any], first_index: int = 0) -> None:
    for index, entry in enumerate(entries, start=first_index):
        if not isinstance(entry, dict):
            raise fhir_error(400, "structure", "Entry must be an object", f"Bundle.entry[{index}]")
        _request_of(entry, index)
        if "resource" in entry:
            try:
                validate_resource(entry["resource"])
            except FhirError as exc:
                raise _with_entry_prefix(exc, index) from None


def _validate_batch_entry(entry: Any, index: int) -> None:
    """Check one batch entry on its own, so a bad entry fails alone, not the whole batch."""
    try:
        validate_resource({"resourceType": "Bundle", "type": "batch", "entry": [entry]})
    except FhirError as exc:
        issues = [
            Issue(
                i.code,
                i.diagnostics,
                i.severity,
                tuple(e.replace("Bundle.entry[0]", f"Bundle.entry[{index}]") for e in i.expression),
            )
            for i in exc.issues
        ]
        raise FhirError(exc.status, issues) from None
    _validate_entries([entry], index)


def _is_get(entry: Any) -> bool:
    request = entry.get("request") if isinstance(entry, dict) else None
    return isinstance(request, dict) and request.get("method") == "GET"


async def transaction(
    store: Store,
    bundle: Json,
    base: str,
    paging: Paging,
    caller: Caller,
    audit: Audit | None = None,
    *,
    long: bool = False,
) -> Json:
    """A transaction-response Bundle; any failing entry raises and nothing is written. Its one
    event names every resource the entries read or wrote. ``long``: the body is large
    (Store.arun)."""
    entries = bundle.get("entry") or []
    runner = EntryRunner(base, paging, caller)
    long = long or len(entries) > INLINE_ENTRIES or any(_is_get(e) for e in entries)

    def unit(tx: Tx) -> Json:
        _validate_entries(entries)  # in the unit: off the event loop with it when long
        # One entry the scopes do not allow refuses the whole transaction before any runs.
        access.require(runner.caller, [entry_need(entry, i) for i, entry in enumerate(entries)])
        urn_to_ref, assigned = _assign_ids(tx, entries, paging.limits)
        rewritten = [_rewrite(e, urn_to_ref) for e in entries]
        _check_resolved(rewritten)
        _check_distinct(rewritten, assigned)
        order = sorted(
            range(len(rewritten)), key=lambda i: _ORDER[rewritten[i]["request"]["method"]]
        )
        results: dict[int, Json] = {}
        for index in order:
            results[index] = runner.entry(tx, rewritten[index], index, assigned)
        answer: Json = {"resourceType": "Bundle", "type": "transaction-response"}
        if entries:  # FHIR forbids empty arrays
            answer["entry"] = [results[i] for i in range(len(entries))]
        touched = [_touched(rewritten[i], results[i]) for i in range(len(entries))]
        record(tx, audit, _all_touched(touched))
        return answer

    return await store.arun(unit, long=long)


# An entry's answer, or the error that failed it (the API makes it an OperationOutcome).
BatchResult = Json | FhirError | StoreError | InsufficientScope


def _entry_unit(
    runner: EntryRunner, entry: Json, index: int, audit: Audit | None
) -> Callable[[Tx], Json]:
    def unit(tx: Tx) -> Json:
        _validate_batch_entry(entry, index)  # in the unit: off the event loop with it when long
        access.require(runner.caller, [entry_need(entry, index)])
        result = runner.entry(tx, entry, index, {})
        record(tx, audit, _touched(entry, result))
        return result

    return unit


async def batch(
    store: Store,
    bundle: Json,
    base: str,
    paging: Paging,
    caller: Caller,
    audit: Audit | None = None,
    *,
    long: bool = False,
) -> list[BatchResult]:
    """Each entry in its own unit of work; a failing entry's error stands in its place.
    ``long``: the body is large, so any entry may be (Store.arun); a GET may be a search.
    Each entry has its own event (subtype: its interaction and batch), stored with its work,
    or after it when it failed.

    Entries before a failure are committed already: even an unexpected error (a bug) fails
    only its entry, as a 500 in the batch-response, so the client learns what was written
    and does not retry (duplicate) the rest.
    """
    runner = EntryRunner(base, paging, caller)
    results: list[BatchResult] = []
    for index, entry in enumerate(bundle.get("entry") or []):
        get = _is_get(entry)
        entry_audit = _entry_audit(audit, entry)
        # An audited GET stores its event: a write unit, then.
        read_only = get and entry_audit is None
        try:
            unit = _entry_unit(runner, entry, index, entry_audit)
            results.append(await store.arun(unit, read_only=read_only, long=long or get))
        except (FhirError, StoreError, InsufficientScope) as exc:
            results.append(exc)
            if entry_audit is not None:
                await record_alone(store, entry_audit, *entry_audit.explain(exc))
        except Exception:
            logger.exception("unhandled error in batch entry %d", index)
            error = FhirError(500, [Issue("exception", "Internal server error")])
            results.append(error)
            if entry_audit is not None:
                await record_alone(store, entry_audit, *entry_audit.explain(error))
    return results
