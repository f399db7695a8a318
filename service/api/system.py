"""System-level interactions: batch/transaction Bundles at POST /fhir and system history.

A transaction is one database transaction: entries run in the spec's order (DELETE, POST,
PUT, GET), ``urn:uuid:`` fullUrls are given ids first and every reference to them rewritten,
and any failing entry rolls the whole Bundle back.
"""

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.api import interactions
from service.api.http import base_url, fhir_response, json_body, negotiate, settings_of
from service.api.rest import history_response, hooks_of, route_name, store_of
from service.fhir import bundles
from service.fhir.dates import format_instant
from service.fhir.errors import FhirError, Issue, fhir_error, operation_outcome
from service.fhir.ids import new_resource_id
from service.fhir.search import parse_search
from service.fhir.validate import validate_resource
from service.hooks import Hooks
from service.store.repository import RetryTransaction, Stored, Tx

router = APIRouter(tags=["system"], dependencies=[Depends(negotiate)])
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def _request_of(entry: dict[str, Any], index: int) -> tuple[str, str]:
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


class BundleRunner:
    def __init__(self, request: Request, hooks: Hooks) -> None:
        self.request = request
        self.hooks = hooks
        self.base = base_url(request)

    def entry(
        self, tx: Tx, entry: dict[str, Any], index: int, assigned: dict[int, str]
    ) -> dict[str, Any]:
        method, url = _request_of(entry, index)
        segments, params = _split_url(url)
        where = f"Bundle.entry[{index}]"
        if method == "GET":
            return self._get(tx, segments, params, where)
        if method == "DELETE":
            if len(segments) != 2:
                raise fhir_error(400, "not-supported", "DELETE needs Type/id", where)
            stored = interactions.delete(tx, self.hooks, segments[0], segments[1])
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
            stored, created = interactions.create(
                tx, self.hooks, body, if_none_exist, assigned.get(index)
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
        version = None
        if if_match:
            digits = "".join(c for c in if_match if c in "0123456789")[:18]
            if not digits:
                raise fhir_error(400, "invalid", f"Malformed ifMatch {if_match!r}", where)
            version = int(digits)
        stored, created = interactions.update(tx, self.hooks, body, segments[1], version)
        return self._written(stored, "201 Created" if created else "200 OK")

    def _written(self, stored: Stored, status: str) -> dict[str, Any]:
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

    def _get(
        self, tx: Tx, segments: list[str], params: list[tuple[str, str]], where: str
    ) -> dict[str, Any]:
        if len(segments) == 2:
            stored = tx.read(segments[0], segments[1])
            return {"resource": stored.body, "response": {"status": "200 OK", "etag": stored.etag}}
        if len(segments) == 1:
            settings = settings_of(self.request)
            query = parse_search(
                segments[0],
                params,
                default_count=settings.default_page_size,
                max_count=settings.max_page_size,
                base_url=self.base,
            )
            page = tx.search(query)
            return {
                "resource": bundles.searchset(self.base, query, page, segments[0]),
                "response": {"status": "200 OK"},
            }
        raise fhir_error(400, "not-supported", "GET supports Type/id and Type?query", where)


def _assign_ids(tx: Tx, entries: list[dict[str, Any]]) -> tuple[dict[str, str], dict[int, str]]:
    """Give every POST entry an id up front (its match, for conditional creates)."""
    urn_to_ref: dict[str, str] = {}
    assigned: dict[int, str] = {}
    for index, entry in enumerate(entries):
        request = entry.get("request") or {}
        body = entry.get("resource")
        if request.get("method") != "POST" or not isinstance(body, dict):
            continue
        resource_type = body.get("resourceType")
        new_id = new_resource_id()
        criteria = request.get("ifNoneExist")
        if criteria:
            query, _ = interactions.parse_if_none_exist(resource_type, criteria)
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


def _check_resolved(entries: list[dict[str, Any]]) -> None:
    for index, entry in enumerate(entries):
        for where in _unresolved_urns(entry.get("resource"), f"Bundle.entry[{index}].resource"):
            raise fhir_error(
                400, "invalid", "Reference to a urn:uuid that no entry of the Bundle creates", where
            )


def _check_distinct(entries: list[dict[str, Any]], assigned: dict[int, str]) -> None:
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


def _validate_entries(entries: list[dict[str, Any]], first_index: int = 0) -> None:
    for index, entry in enumerate(entries, start=first_index):
        if not isinstance(entry, dict):
            raise fhir_error(400, "structure", "Entry must be an object", f"Bundle.entry[{index}]")
        _request_of(entry, index)
        if "resource" in entry:
            try:
                validate_resource(entry["resource"])
            except FhirError as exc:
                raise FhirError(
                    exc.status,
                    [
                        Issue(i.code, f"entry[{index}]: {i.diagnostics}", i.severity, i.expression)
                        for i in exc.issues
                    ],
                ) from None


def _validate_batch_entry(entry: Any, index: int) -> None:
    """Check one batch entry on its own, so a bad entry fails alone, not the whole batch."""
    try:
        validate_resource({"resourceType": "Bundle", "type": "batch", "entry": [entry]})
    except FhirError as exc:
        raise FhirError(
            exc.status,
            [
                Issue(
                    i.code,
                    i.diagnostics,
                    i.severity,
                    tuple(
                        e.replace("Bundle.entry[0]", f"Bundle.entry[{index}]") for e in i.expression
                    ),
                )
                for i in exc.issues
            ],
        ) from None
    _validate_entries([entry], index)


async def _transaction(request: Request, bundle: dict[str, Any]) -> dict[str, Any]:
    entries = bundle.get("entry") or []
    _validate_entries(entries)
    runner = BundleRunner(request, hooks_of(request))

    def unit(tx: Tx) -> dict[str, Any]:
        urn_to_ref, assigned = _assign_ids(tx, entries)
        rewritten = [_rewrite(e, urn_to_ref) for e in entries]
        _check_resolved(rewritten)
        _check_distinct(rewritten, assigned)
        order = sorted(
            range(len(rewritten)), key=lambda i: _ORDER[rewritten[i]["request"]["method"]]
        )
        results: dict[int, dict[str, Any]] = {}
        for index in order:
            results[index] = runner.entry(tx, rewritten[index], index, assigned)
        answer: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction-response"}
        if entries:  # FHIR forbids empty arrays
            answer["entry"] = [results[i] for i in range(len(entries))]
        return answer

    return await store_of(request).arun(unit)


async def _batch(request: Request, bundle: dict[str, Any]) -> dict[str, Any]:
    runner = BundleRunner(request, hooks_of(request))
    results = []
    for index, entry in enumerate(bundle.get("entry") or []):
        try:
            _validate_batch_entry(entry, index)
            results.append(
                await store_of(request).arun(
                    lambda tx, e=entry, i=index: runner.entry(tx, e, i, {})
                )
            )
        except FhirError as exc:
            results.append(
                {
                    "response": {
                        "status": str(exc.status),
                        "outcome": operation_outcome(exc.issues),
                    }
                }
            )
    # FHIR forbids empty arrays: a Bundle without entries answers without "entry".
    return {"resourceType": "Bundle", "type": "batch-response"} | (
        {"entry": results} if results else {}
    )


@router.post(
    "/fhir",
    name=route_name("transaction"),
    operation_id="transaction",
    summary="Process a batch or transaction Bundle",
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/fhir+json": {"schema": {"type": "object"}}},
        }
    },
)
async def batch_or_transaction(request: Request) -> Response:
    body = await json_body(request)
    if (
        isinstance(body, dict)
        and body.get("type") == "batch"
        and isinstance(body.get("entry"), list)
        and body["entry"]
    ):
        # A batch's entries are checked one by one: one bad entry fails only itself.
        validate_resource({k: v for k, v in body.items() if k != "entry"}, "Bundle")
        return fhir_response(request, await _batch(request, body))
    bundle = validate_resource(body, "Bundle")
    kind = bundle.get("type")
    if kind == "transaction":
        return fhir_response(request, await _transaction(request, bundle))
    if kind == "batch":
        return fhir_response(request, await _batch(request, bundle))
    raise fhir_error(
        400, "invalid", f"Bundle.type must be batch or transaction, not {kind!r}", "Bundle.type"
    )


@router.get(
    "/fhir/_history",
    name=route_name("history-system"),
    operation_id="historySystem",
    summary="History of every resource",
    response_class=Response,
)
async def system_history(request: Request) -> Response:
    return await history_response(request, None, None, "_history")
