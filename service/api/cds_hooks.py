"""CDS Hooks 2.0 routes: discovery, one service per hook, feedback. HTTP only: the EHR's JWT
(its ``aud`` is the exact URL called), the body, one use case, the JSON answer.

The services live at ``{root}/cds-services`` beside ``{root}/fhir``; ``root`` is
``CAREPLAN_BASE_URL`` without its ``/fhir`` (else the request's own base), so the audience an
EHR signs is the public URL behind a proxy. They are not in the OpenAPI document: EHRs find
them through the discovery document, which is their contract.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.audit import record_cds_call
from service.api.errors import as_fhir_error, bearer_challenge
from service.api.http import base_url, json_body, settings_of
from service.api.rest import store_of
from service.auth.cds_clients import CdsCaller
from service.auth.verify import InvalidToken
from service.fhir.errors import FhirError, Issue, fhir_error, information_outcome
from service.settings import Settings
from service.store.errors import StoreError
from service.store.runner import Store
from service.usecases.authorization import AuthPolicy
from service.usecases.cds import feedback, hooks
from service.usecases.cds.access import CdsAccess, open_cds
from service.usecases.cds.services import SERVICES, CdsService, discovery

router = APIRouter(include_in_schema=False)
logger = logging.getLogger("careplan.cds")
JSON = "application/json"
Work = Callable[[CdsCaller | None], Awaitable[Response]]


def start(settings: Settings, store: Store, policy: AuthPolicy) -> CdsAccess:
    """The CDS Hooks access of the app (raises usecases.cds.access.CdsConfigError)."""
    return open_cds(
        store,
        clients=settings.cds_clients,
        policy=policy,
        fhir_servers=settings.cds_fhir_servers,
        timeout=settings.cds_fhir_timeout_seconds,
        trusted_systems=settings.cds_trusted_identifier_systems,
    )


def _access(request: Request) -> CdsAccess:
    access: CdsAccess = request.app.state.cds
    return access


def cds_root(request: Request) -> str:
    configured = settings_of(request).base_url.rstrip("/")
    if configured:
        return configured.removesuffix("/fhir")
    return str(request.base_url).rstrip("/")


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type=JSON)


async def _serve(request: Request, kind: str, service_id: str | None, work: Work) -> Response:
    """Every CDS Hooks route: the caller's JWT for the exact URL called, then ``work``; the
    call or its refusal leaves an AuditEvent (no patient identifier is logged)."""
    caller: CdsCaller | None = None
    status, description = 500, "Internal server error"
    try:
        audience = cds_root(request) + request.url.path
        try:
            server = request.scope.get("server")
            caller = await _access(request).caller(
                request.headers.get("authorization"), audience, server[0] if server else None
            )
        except InvalidToken as refused:
            raise FhirError(
                401,
                [Issue("login", f"CDS Hooks JWT refused: {refused.reason}")],
                {"WWW-Authenticate": bearer_challenge("invalid_token", refused.reason)},
            ) from None
        response = await work(caller)
        status, description = response.status_code, ""
        return response
    except (FhirError, StoreError) as error:
        answer = as_fhir_error(error)
        status = answer.status
        description = "; ".join(issue.diagnostics for issue in answer.issues)
        raise
    finally:
        operation = {"discovery": "discovery", "feedback": f"{service_id}/feedback"}.get(
            kind, service_id or kind
        )
        await record_cds_call(request, operation, caller, status, description)
        logger.debug(
            "cds call",
            extra={"cds_kind": kind, "cds_service": service_id, "status": status},
        )


def _service(service_id: str) -> CdsService:
    service = SERVICES.get(service_id)
    if service is None:
        raise fhir_error(404, "not-found", f"No CDS service {service_id!r}; see /cds-services")
    return service


@router.get("/cds-services", name="cds:discovery")
async def discover(request: Request) -> Response:
    async def work(_caller: CdsCaller | None) -> Response:
        return _json(discovery())

    return await _serve(request, "discovery", None, work)


@router.post("/cds-services/{service_id}", name="cds:service")
async def call_service(request: Request, service_id: str) -> Response:
    async def work(_caller: CdsCaller | None) -> Response:
        service = _service(service_id)
        access = _access(request)
        context = hooks.CdsContext(
            store=store_of(request),
            ehr=access.ehr,
            own_base=base_url(request),
            trusted_systems=access.trusted_systems,
            now=datetime.now(UTC),
        )
        return _json(await hooks.answer(context, service, await json_body(request)))

    return await _serve(request, "call", service_id, work)


@router.post("/cds-services/{service_id}/feedback", name="cds:feedback")
async def post_feedback(request: Request, service_id: str) -> Response:
    async def work(_caller: CdsCaller | None) -> Response:
        service = _service(service_id)
        stored = await feedback.record_feedback(
            store_of(request), service, await json_body(request)
        )
        outcome = information_outcome(f"Feedback stored: {', '.join(stored)}")
        return Response(orjson.dumps(outcome), media_type="application/fhir+json")

    return await _serve(request, "feedback", service_id, work)
