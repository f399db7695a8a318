"""System-level routes: batch/transaction Bundles at POST /fhir and system history."""

from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.api.audit import audit_of
from service.api.errors import as_fhir_error
from service.api.http import base_url, checked_body, fhir_response, negotiate, settings_of
from service.api.openapi.security import security_for
from service.api.rest import history_response, route_name, search_limits, store_of
from service.api.security import caller_of, guard
from service.fhir.errors import fhir_error, operation_outcome
from service.fhir.validate import validate_resource
from service.usecases import transaction
from service.usecases.transaction import BatchResult, Paging

# What these need depends on the Bundle's entries and on the types in the history: their use
# cases check it. The guard only authenticates.
router = APIRouter(tags=["system"], dependencies=[Depends(guard()), Depends(negotiate)])


def paging_of(request: Request) -> Paging:
    settings = settings_of(request)
    return Paging(settings.default_page_size, settings.max_page_size, search_limits(request))


def _status_line(status: int) -> str:
    """A batch entry's response.status: the code and its reason phrase ("404 Not Found")."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _batch_response(results: list[BatchResult]) -> dict[str, Any]:
    entries = []
    for result in results:
        if isinstance(result, dict):
            entries.append(result)
            continue
        error = as_fhir_error(result)
        entries.append(
            {
                "response": {
                    "status": _status_line(error.status),
                    "outcome": operation_outcome(error.issues),
                }
            }
        )
    # FHIR forbids empty arrays: a Bundle without entries answers without "entry".
    return {"resourceType": "Bundle", "type": "batch-response"} | (
        {"entry": entries} if entries else {}
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
        },
        # Each entry needs its interaction's scope on its type.
        "security": security_for(),
    },
)
async def batch_or_transaction(request: Request) -> Response:
    bundle, large = await checked_body(request, _checked_bundle)
    store, base, paging = store_of(request), base_url(request), paging_of(request)
    caller = caller_of(request)
    kind = bundle.get("type")
    if kind == "batch":
        request.state.audit_interaction = "batch"
    audit = audit_of(request)
    if kind == "transaction":
        answer = await transaction.transaction(
            store, bundle, base, paging, caller, audit, long=large
        )
        return fhir_response(request, answer)
    if kind == "batch":
        results = await transaction.batch(store, bundle, base, paging, caller, audit, long=large)
        return fhir_response(request, _batch_response(results))
    raise fhir_error(
        400, "invalid", f"Bundle.type must be batch or transaction, not {kind!r}", "Bundle.type"
    )


def _checked_bundle(body: Any) -> dict[str, Any]:
    if (
        isinstance(body, dict)
        and body.get("type") == "batch"
        and isinstance(body.get("entry"), list)
        and body["entry"]
    ):
        # A batch's entries are checked one by one: one bad entry fails only itself.
        validate_resource({k: v for k, v in body.items() if k != "entry"}, "Bundle")
        return body
    return validate_resource(body, "Bundle")


@router.get(
    "/fhir/_history",
    name=route_name("history-system"),
    operation_id="historySystem",
    summary="History of every resource",
    response_class=Response,
    # Shows the types the token may search (and, within them, what it may read).
    openapi_extra={"security": security_for()},
)
async def system_history(request: Request) -> Response:
    return await history_response(request, None, None, "_history")
