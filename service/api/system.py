"""System-level routes: batch/transaction Bundles at POST /fhir and system history."""

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.api.audit import audit_of
from service.api.errors import as_fhir_error
from service.api.http import base_url, fhir_response, json_body, negotiate, settings_of
from service.api.rest import history_response, route_name, store_of
from service.fhir.errors import fhir_error, operation_outcome
from service.fhir.validate import validate_resource
from service.usecases import transaction
from service.usecases.transaction import BatchResult, Paging

router = APIRouter(tags=["system"], dependencies=[Depends(negotiate)])


def paging_of(request: Request) -> Paging:
    settings = settings_of(request)
    return Paging(settings.default_page_size, settings.max_page_size)


def _batch_response(results: list[BatchResult]) -> dict[str, Any]:
    entries = []
    for result in results:
        if isinstance(result, dict):
            entries.append(result)
            continue
        error = as_fhir_error(result)
        entries.append(
            {"response": {"status": str(error.status), "outcome": operation_outcome(error.issues)}}
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
        }
    },
)
async def batch_or_transaction(request: Request) -> Response:
    body = await json_body(request)
    store, base, paging = store_of(request), base_url(request), paging_of(request)
    if (
        isinstance(body, dict)
        and body.get("type") == "batch"
        and isinstance(body.get("entry"), list)
        and body["entry"]
    ):
        # A batch's entries are checked one by one: one bad entry fails only itself.
        request.state.audit_interaction = "batch"
        validate_resource({k: v for k, v in body.items() if k != "entry"}, "Bundle")
        results = await transaction.batch(store, body, base, paging, audit_of(request))
        return fhir_response(request, _batch_response(results))
    bundle = validate_resource(body, "Bundle")
    kind = bundle.get("type")
    if kind == "transaction":
        answer = await transaction.transaction(store, bundle, base, paging, audit_of(request))
        return fhir_response(request, answer)
    if kind == "batch":
        request.state.audit_interaction = "batch"
        results = await transaction.batch(store, bundle, base, paging, audit_of(request))
        return fhir_response(request, _batch_response(results))
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
