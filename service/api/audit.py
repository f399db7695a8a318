"""The audit trail's HTTP side: the circumstances of a request (who, from where, what it asks)
for the use case that records its AuditEvent, and the AuditEvent of every error answer and
every refused request.

A route passes ``audit_of(request)`` to its use case, which stores the event with its work. An
error answer under /fhir gets its event from the error handlers (errors.py), unless the
request's event is stored already; a refusal answered outside them calls ``record_refusal``.
The token is never read here: the caller is the verified ``request.state.access``.
"""

import logging
from typing import Any

from fastapi import Request

from service.api.http import base_url
from service.audit.events import Caller, Circumstances, Interaction
from service.audit.interactions import interaction_for, raw_query, searches
from service.auth.cds_clients import CdsCaller
from service.auth.permissions import InsufficientScope
from service.auth.verify import AccessContext
from service.fhir.errors import FhirError
from service.observability import get_request_id
from service.store.errors import StoreError
from service.usecases.audit_trail import Audit, record_alone

logger = logging.getLogger("careplan.audit")

FHIR_PREFIX = "/fhir"


def audited_path(path: str) -> bool:
    """The FHIR API, not its discovery documents (``/fhir/.well-known/...``)."""
    if path != FHIR_PREFIX and not path.startswith(FHIR_PREFIX + "/"):
        return False
    return not path[len(FHIR_PREFIX) :].lstrip("/").startswith(".")


def caller_of(access: AccessContext | None) -> Caller | None:
    if access is None:
        return None
    patient = access.patient
    if patient and "/" not in patient:
        patient = f"Patient/{patient}"
    return Caller(
        client_id=access.client_id,
        issuer=access.issuer,
        scopes=tuple(str(scope) for scope in access.scopes.scopes),
        token_id=access.token_id,
        patient=patient,
    )


def _interaction(request: Request, code: str | None) -> Interaction:
    path = request.url.path[len(FHIR_PREFIX) :]
    interaction = interaction_for(request.method, path)
    route = request.scope.get("route")
    name = getattr(route, "name", "") or ""
    if name.startswith("fhir:op:"):  # fhir:op:<name>:<type|system>:<definition canonical>
        definition = ":".join(name.split(":")[4:])
        interaction = Interaction(
            "operation",
            interaction.resource_type,
            interaction.resource_id,
            operation=interaction.operation,
            definition=definition or None,
        )
    code = code or getattr(request.state, "audit_interaction", None)
    if code:
        interaction = Interaction(code, interaction.resource_type, interaction.resource_id)
    return interaction


def circumstances_of(
    request: Request,
    *,
    form: str = "",
    code: str | None = None,
    access: AccessContext | None = None,
) -> Circumstances:
    """What a request is: its interaction (``code`` overrides the one its URL names, e.g.
    ``batch``), this server, the verified caller, the client's address, the request id, and
    for a search the request as sent (``form``: a POSTed search's form body)."""
    interaction = _interaction(request, code)
    query = None
    if searches(interaction):
        path = request.url.path[len(FHIR_PREFIX) :].strip("/")
        query = raw_query(path, request.url.query, form)
    client = request.client
    return Circumstances(
        interaction=interaction,
        server=base_url(request),
        caller=caller_of(access or getattr(request.state, "access", None)),
        address=client.host if client is not None else None,
        request_id=get_request_id(),
        query=query,
    )


def _explain(error: Exception) -> tuple[int, str]:
    """The status and text of the OperationOutcome the API answers an error with."""
    from service.api.errors import as_fhir_error  # errors.py records through this module

    if isinstance(error, (FhirError, StoreError, InsufficientScope)):
        answer = as_fhir_error(error)
        return answer.status, "; ".join(issue.diagnostics for issue in answer.issues)
    return 500, "Internal server error"


def audit_of(request: Request, **kwargs: Any) -> Audit:
    """The Audit a use case records this request with (``circumstances_of``'s arguments)."""

    def committed() -> None:
        request.state.audited = True

    return Audit(circumstances_of(request, **kwargs), committed, _explain)


async def record_error(request: Request, status: int, description: str) -> None:
    """The AuditEvent of an error answer (outcome 4 for a 4xx, 8 for a 5xx), unless the request
    is not a FHIR interaction or its event is stored already. Never fails the answer: an event
    that cannot be stored (the database is down) is logged as such."""
    await _record(request, status, description, None)


async def record_refusal(
    request: Request, status: int, reason: str, access: AccessContext | None = None
) -> None:
    """The AuditEvent of a refused request (401: no usable token; 403: a token without the
    scope), for a refusal answered without raising to the error handlers (they record the
    ones raised as FhirError themselves). ``reason`` is a fixed text, never the token;
    ``access``: the verified token of a 403 when it is not on ``request.state.access``."""
    await _record(request, status, reason, access)


async def _record(
    request: Request, status: int, description: str, access: AccessContext | None
) -> None:
    if not audited_path(request.url.path) or getattr(request.state, "audited", False):
        return
    store = getattr(request.app.state, "store", None)
    if store is None:  # not started (a failed start-up): nothing to write to
        return
    request.state.audited = True
    try:
        audit = Audit(circumstances_of(request, access=access))
        await record_alone(store, audit, status, description)
    except Exception as error:  # the answer is an error already; say the event is missing
        logger.warning(
            "the AuditEvent of a failed request could not be stored",
            extra={"status": status, "error": type(error).__name__},
        )


async def record_cds_call(
    request: Request, operation: str, caller: CdsCaller | None, status: int, description: str
) -> None:
    """The AuditEvent of a CDS Hooks call or its refusal: subtype ``operation`` with the CDS
    service id (``operation``: the id, ``discovery``, or ``<id>/feedback``), the EHR by its
    issuer and its JWT's ``jti``. Never fails the answer (as ``record_error``)."""
    store = getattr(request.app.state, "store", None)
    if store is None:
        return
    client = request.client
    circumstances = Circumstances(
        interaction=Interaction("operation", operation=operation, definition=CDS_HOOKS),
        server=base_url(request),
        caller=(
            Caller(client_id=caller.issuer, issuer=caller.issuer, token_id=caller.jti)
            if caller is not None
            else None
        ),
        address=client.host if client is not None else None,
        request_id=get_request_id(),
    )
    try:
        await record_alone(store, Audit(circumstances), status, description)
    except Exception as error:
        logger.warning(
            "the AuditEvent of a CDS Hooks call could not be stored",
            extra={"status": status, "error": type(error).__name__},
        )


CDS_HOOKS = "https://cds-hooks.hl7.org/2.0"
