"""FHIR operations: PlanDefinition/$apply, CarePlan/$submit-session, CarePlan/$evaluate."""

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.api.audit import audit_of
from service.api.http import base_url, check_id, checked_body, fhir_response, json_body, negotiate
from service.api.openapi.security import security_for
from service.api.rest import store_of
from service.api.security import caller_of, guard
from service.auth.permissions import operation_needs
from service.fhir.errors import fhir_error
from service.fhir.validate import validate_resource
from service.protocol.codes import CANONICAL_BASE
from service.usecases import enrolment, sessions

router = APIRouter()
Json = dict[str, Any]
OD_BASE = f"{CANONICAL_BASE}/OperationDefinition"


def op_route_name(name: str, scope: str, definition: str) -> str:
    """Read by the CapabilityStatement: fhir:op:<name>:<type|system>:<OperationDefinition>."""
    return f"fhir:op:{name}:{scope}:{definition}"


def _parameter(parameters: Json, name: str) -> Any:
    for part in parameters.get("parameter", []):
        if part.get("name") == name:
            for key, value in part.items():
                if key.startswith("value") or key == "resource":
                    return value
    return None


def _once(values: list[Any], name: str) -> Any:
    """The value of an input that may appear at most once, or None."""
    if len(values) > 1:
        raise fhir_error(400, "invalid", f"The parameter {name!r} appears more than once", name)
    return values[0] if values else None


def _apply_input(request: Request, params: Json | None, name: str) -> Any:
    if params is None:
        return _once(request.query_params.getlist(name), name)
    parts = [p for p in params.get("parameter", []) if p.get("name") == name]
    return _parameter({"parameter": parts}, name) if _once(parts, name) is not None else None


async def _parameters_body(request: Request) -> Json:
    body = validate_resource(await json_body(request))
    if body["resourceType"] != "Parameters":
        raise fhir_error(400, "invalid", "The body must be a Parameters resource", "resourceType")
    return body


def _subject(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("reference")
    if not isinstance(value, str) or not value:
        raise fhir_error(400, "required", "$apply needs a subject (Patient/<id>)", "subject")
    return value


async def _apply(request: Request, resource_id: str | None) -> Response:
    if resource_id is not None:
        check_id(resource_id)
    params = await _parameters_body(request) if request.method == "POST" else None
    # subject 1..1 and url 0..1 (the OperationDefinition): two must not silently become one.
    subject = _subject(_apply_input(request, params, "subject"))
    url = _apply_input(request, params, "url")
    applied = await enrolment.apply_plan_definition(
        store_of(request),
        resource_id,
        url,
        subject,
        datetime.now(UTC),
        caller_of(request),
        audit_of(request),
    )
    return fhir_response(request, applied)


APPLY = f"{OD_BASE}/PlanDefinition-apply"
SUBMIT = f"{OD_BASE}/CarePlan-submit-session"
EVALUATE = f"{OD_BASE}/CarePlan-evaluate"
_APPLY_DOC = (
    "Apply the protocol to a patient: the CarePlan it gives them now (not stored). "
    "POST the result to /fhir/CarePlan to enrol."
)


async def apply_instance(request: Request, id: str) -> Response:
    return await _apply(request, id)


async def apply_type(request: Request) -> Response:
    return await _apply(request, None)


async def submit_session(request: Request, id: str) -> Response:
    check_id(id)
    body, large = await checked_body(request, validate_resource)
    where = "Bundle"
    if body["resourceType"] == "Parameters":
        parts = [i for i, p in enumerate(body.get("parameter", [])) if p.get("name") == "session"]
        if len(parts) > 1:
            raise fhir_error(400, "invalid", "Parameters has more than one 'session'", "session")
        where = f"Parameters.parameter[{parts[0] if parts else 0}].resource"
        bundle = _parameter(body, "session")
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise fhir_error(
                400, "required", "Parameters needs a part 'session' with a Bundle", "session"
            )
    elif body["resourceType"] == "Bundle":
        bundle = body
    else:
        raise fhir_error(400, "invalid", "The body must be Parameters or a Bundle", "resourceType")
    now = datetime.now(UTC)
    base = base_url(request)
    answer = await sessions.submit(
        store_of(request),
        id,
        bundle,
        now,
        base,
        where,
        caller_of(request),
        audit_of(request),
        long=large,
    )
    return fhir_response(request, answer)


async def evaluate(request: Request, id: str) -> Response:
    check_id(id)
    at = datetime.now(UTC)
    if request.headers.get("content-length", "0") != "0":
        params = await _parameters_body(request)
        text = _parameter(params, "at")
        if text is not None:
            at = sessions.parse_clock(str(text))
    now = datetime.now(UTC)
    answer = await sessions.reevaluate(
        store_of(request), id, at, now, caller_of(request), audit_of(request)
    )
    return fhir_response(request, answer)


def _add(
    path: str,
    endpoint: Any,
    methods: list[str],
    name: str,
    operation_id: str,
    tag: str,
    summary: str,
) -> None:
    # fhir:op:<name>:...: the operation's declared needs (permissions.OPERATION_NEEDS).
    needs = operation_needs(f"${name.split(':')[2]}")
    router.add_api_route(
        path,
        endpoint,
        methods=methods,
        name=name,
        operation_id=operation_id,
        tags=[tag],
        summary=summary,
        response_class=Response,
        dependencies=[Depends(guard(*needs)), Depends(negotiate)],
        openapi_extra={"security": security_for(*needs)},
    )


for _method in ("GET", "POST"):
    _suffix = "" if _method == "GET" else "Post"
    _add(
        "/fhir/PlanDefinition/$apply",
        apply_type,
        [_method],
        op_route_name("apply", "PlanDefinition", APPLY),
        f"applyPlanDefinitionByUrl{_suffix}",
        "PlanDefinition",
        _APPLY_DOC,
    )
    _add(
        "/fhir/PlanDefinition/{id}/$apply",
        apply_instance,
        [_method],
        op_route_name("apply", "PlanDefinition", APPLY),
        f"applyPlanDefinition{_suffix}",
        "PlanDefinition",
        _APPLY_DOC,
    )
_add(
    "/fhir/CarePlan/{id}/$submit-session",
    submit_session,
    ["POST"],
    op_route_name("submit-session", "CarePlan", SUBMIT),
    "submitSession",
    "CarePlan",
    "Submit a session of Flexion in Lying and get the decision",
)
_add(
    "/fhir/CarePlan/{id}/$evaluate",
    evaluate,
    ["POST"],
    op_route_name("evaluate", "CarePlan", EVALUATE),
    "evaluateCarePlan",
    "CarePlan",
    "Re-evaluate the care plan from stored data (e.g. when a retry window opens)",
)
