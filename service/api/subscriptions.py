"""Subscription routes: create and update (with the channel checks and the signing secret),
``$status`` and ``$events``. Read, search, history and delete are the generic ones (rest.py).
"""

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.api.audit import audit_of
from service.api.http import (
    base_url,
    check_id,
    fhir_response,
    if_match_of,
    json_body,
    negotiate,
    settings_of,
    write_response,
)
from service.api.openapi.security import security_for
from service.api.security import caller_of, guard
from service.auth.permissions import Need
from service.fhir.errors import fhir_error
from service.fhir.validate import validate_resource
from service.store.runner import Store
from service.usecases import subscriptions

router = APIRouter()
Json = dict[str, Any]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _rules(request: Request) -> subscriptions.Rules:
    return subscriptions.rules(settings_of(request).subscription_endpoints, base_url(request))


def limited_to(request: Request, letter: str) -> str | None:
    """The patient a caller's Subscription access is limited to (a ``patient/`` token), or
    None when it is not limited (no token checked: an open service, or system scopes). A
    token without an unlimited permit is held to its patient claim, and without one to
    nobody."""
    access = getattr(request.state, "access", None)
    if access is None:
        return None
    permits = access.permits(Need("Subscription", letter))
    if any(permit.patient is None for permit in permits):
        return None
    return str(access.patient or "")


async def create(request: Request) -> Response:
    body = validate_resource(await json_body(request), "Subscription")
    body.pop("id", None)
    patient = limited_to(request, "c")
    stored = await subscriptions.create(
        _store(request), body, _rules(request), patient, audit_of(request), caller_of(request)
    )
    return write_response(request, stored, 201, location=True)


async def update(request: Request, id: str) -> Response:
    check_id(id)
    if_match = if_match_of(request)
    body = validate_resource(await json_body(request), "Subscription")
    if body.get("id") != id:
        raise fhir_error(
            400,
            "invalid",
            f"The body's id {body.get('id')!r} does not match the URL id {id!r}",
            "id",
        )
    patient = limited_to(request, "u")
    stored, created = await subscriptions.update(
        _store(request),
        id,
        body,
        if_match,
        _rules(request),
        patient,
        audit_of(request),
        caller_of(request),
    )
    return write_response(request, stored, 201 if created else 200, location=True)


def create_handler(_resource_type: str) -> Any:
    return create


def update_handler(_resource_type: str) -> Any:
    return update


async def status_instance(request: Request, id: str) -> Response:
    check_id(id)
    bundle = await subscriptions.status(
        _store(request), [id], base_url(request), limited_to(request, "r"), audit_of(request)
    )
    return fhir_response(request, bundle)


async def status_type(request: Request) -> Response:
    ids = request.query_params.getlist("id") or None
    if request.method == "POST":
        body = validate_resource(await json_body(request))
        if body["resourceType"] != "Parameters":
            raise fhir_error(400, "invalid", "The body must be a Parameters resource")
        named = [
            str(p["valueId"])
            for p in body.get("parameter", [])
            if p.get("name") == "id" and "valueId" in p
        ]
        ids = named or ids
    for value in ids or []:
        check_id(value)
    bundle = await subscriptions.status(
        _store(request), ids, base_url(request), limited_to(request, "r"), audit_of(request)
    )
    return fhir_response(request, bundle)


def _parameter(parameters: Json, name: str) -> str | None:
    for part in parameters.get("parameter", []):
        if part.get("name") == name:
            for key, value in part.items():
                if key.startswith("value"):
                    return str(value)
    return None


async def events(request: Request, id: str) -> Response:
    check_id(id)
    if request.method == "POST":
        body = validate_resource(await json_body(request))
        if body["resourceType"] != "Parameters":
            raise fhir_error(400, "invalid", "The body must be a Parameters resource")
        values = {n: _parameter(body, n) for n in ("eventsSinceNumber", "eventsUntilNumber")}
        content = _parameter(body, "content")
    else:
        query = request.query_params
        values = {n: query.get(n) for n in ("eventsSinceNumber", "eventsUntilNumber")}
        content = query.get("content")
    bundle = await subscriptions.events(
        _store(request),
        id,
        values["eventsSinceNumber"],
        values["eventsUntilNumber"],
        content,
        base_url(request),
        limited_to(request, "r"),
        audit_of(request),
        caller_of(request),
    )
    return fhir_response(request, bundle)


def _name(operation: str, definition: str) -> str:
    return f"fhir:op:{operation}:Subscription:{definition}"


# $status and $events read subscriptions: Subscription r (a patient/ token: its own only).
_READ = Need("Subscription", "r")


def _add(path: str, endpoint: Any, method: str, name: str, operation_id: str, summary: str) -> None:
    router.add_api_route(
        path,
        endpoint,
        methods=[method],
        name=name,
        operation_id=operation_id,
        tags=["Subscription"],
        summary=summary,
        response_class=Response,
        # The token first: a caller without one learns nothing else (not even a 406).
        dependencies=[Depends(guard(_READ)), Depends(negotiate)],
        openapi_extra={"security": security_for(_READ)},
    )


for _method, _suffix in (("GET", ""), ("POST", "Post")):
    _add(
        "/fhir/Subscription/$status",
        status_type,
        _method,
        _name("status", subscriptions.STATUS_OPERATION),
        f"subscriptionStatusAll{_suffix}",
        "The status of subscriptions (all, or those named by id)",
    )
    _add(
        "/fhir/Subscription/{id}/$status",
        status_instance,
        _method,
        _name("status", subscriptions.STATUS_OPERATION),
        f"subscriptionStatus{_suffix}",
        "The status of a subscription: status, events since it started, error",
    )
_add(
    "/fhir/Subscription/{id}/$events",
    events,
    "GET",
    _name("events", subscriptions.EVENTS_OPERATION),
    "subscriptionEvents",
    "A subscription's past events, as the notifications carried them",
)
_add(
    "/fhir/Subscription/{id}/$events",
    events,
    "POST",
    _name("events", subscriptions.EVENTS_OPERATION),
    "subscriptionEventsPost",
    "A subscription's past events (Parameters body)",
)
