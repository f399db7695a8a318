"""GET /fhir/metadata: a CapabilityStatement read off the routes that are really mounted."""

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from service import __version__
from service.api.http import base_url, fhir_response, negotiate
from service.api.security import authorization_of
from service.fhir.search_params import INCLUDES, params_for, revinclude_sources
from service.usecases import subscriptions
from service.usecases.authorization import token_url
from service.usecases.crud import VERSIONED_UPDATE_TYPES

router = APIRouter(tags=["system"], dependencies=[Depends(negotiate)])

_TYPE_INTERACTIONS = {
    "read": "read",
    "vread": "vread",
    "update": "update",
    "delete": "delete",
    "history-instance": "history-instance",
    "history-type": "history-type",
    "create": "create",
    "search-type": "search-type",
}
_SYSTEM_INTERACTIONS = {
    "transaction": ["transaction", "batch"],
    "history-system": ["history-system"],
}


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI >= 0.160 nests them)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None) or getattr(route, "app", None)
        if nested is not None and hasattr(nested, "routes") and nested is not route:
            yield from api_routes(list(nested.routes))


def _routes(request: Request) -> list[tuple[str, ...]]:
    return [
        tuple(route.name.split(":")[1:])
        for route in api_routes(list(request.app.routes))
        if route.name.startswith("fhir:")
    ]


def capability_statement(request: Request) -> dict[str, Any]:
    by_type: dict[str, set[str]] = {}
    operations: dict[str, list[tuple[str, str]]] = {}  # type -> [(name, definition)]
    system_ops: list[tuple[str, str]] = []
    system: list[str] = []
    for parts in _routes(request):
        if parts[0] == "op":  # fhir:op:<name>:<type or system>:<definition canonical>
            name, scope, definition = parts[1], parts[2], ":".join(parts[3:])
            target = system_ops if scope == "system" else operations.setdefault(scope, [])
            if (name, definition) not in target:
                target.append((name, definition))
        elif len(parts) == 2 and parts[0] in _TYPE_INTERACTIONS:
            by_type.setdefault(parts[1], set()).add(parts[0])
        elif len(parts) == 1 and parts[0] in _SYSTEM_INTERACTIONS:
            system.extend(_SYSTEM_INTERACTIONS[parts[0]])

    resources = []
    for resource_type in sorted(by_type):
        interactions = by_type[resource_type]
        versioned_update = resource_type in VERSIONED_UPDATE_TYPES
        entry: dict[str, Any] = {
            "type": resource_type,
            "interaction": [
                {"code": _TYPE_INTERACTIONS[i]} for i in _TYPE_INTERACTIONS if i in interactions
            ],
            # R4: "versioned-update" = the version must be correct for updates (If-Match);
            # "versioned" = versions are kept, If-Match is honoured when sent.
            "versioning": "versioned-update" if versioned_update else "versioned",
            "readHistory": "vread" in interactions,
            "updateCreate": "update" in interactions and not versioned_update,
            "conditionalCreate": "create" in interactions,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
        }
        if versioned_update and "update" in interactions:
            entry["documentation"] = (
                f"The service changes {resource_type}s with its decisions: an update (PUT) "
                "needs If-Match with the version it was read at (428 without it, 412 when "
                "stale). Create with POST."
            )
        if "search-type" in interactions:
            entry["searchInclude"] = [
                f"{resource_type}:{p}" for p in INCLUDES.get(resource_type, ())
            ]
            entry["searchParam"] = [
                {"name": p.name, "type": p.type, "documentation": p.description}
                | ({"definition": p.definition} if p.definition else {})
                for p in params_for(resource_type).values()
            ]
            if not entry["searchInclude"]:
                del entry["searchInclude"]
            if revincludes := revinclude_sources(resource_type):
                entry["searchRevInclude"] = list(revincludes)
        if resource_type in operations:
            entry["operation"] = [
                {"name": n, "definition": d} for n, d in sorted(operations[resource_type])
            ]
        if resource_type == "Subscription":
            entry = _subscription_entry(entry)
        resources.append(entry)

    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "FHIR R4 JSON. Unknown search parameters are ignored unless "
        "Prefer: handling=strict. Paging uses opaque cursors that stay correct while data is "
        "written.",
        "resource": resources,
        "interaction": [{"code": code} for code in sorted(set(system))],
    }
    if system_ops:
        rest["operation"] = [{"name": n, "definition": d} for n, d in sorted(system_ops)]
    server = request.scope.get("server")
    if not authorization_of(request).policy.is_open(server[0] if server else None):
        rest["security"] = _security(base_url(request))
    return {
        "resourceType": "CapabilityStatement",
        "instantiates": [subscriptions.BACKPORT_SERVER],
        "status": "active",
        "date": "2026-11-24",
        "publisher": "Flexion CarePlan",
        "kind": "instance",
        "software": {"name": "flexion-careplan", "version": __version__},
        "implementation": {
            "description": "Flexion in Lying care-plan service",
            "url": base_url(request),
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [rest],
    }


def _security(base: str) -> dict[str, Any]:
    """SMART on FHIR (App Launch 2.x, "Conformance"): the service coding and the token
    endpoint in the oauth-uris extension."""
    return {
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "token", "valueUri": token_url(base)}],
            }
        ],
        "cors": False,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                        "display": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 bearer tokens (SMART Backend Services)",
            }
        ],
        "description": "Every request needs Authorization: Bearer <token> from the token "
        f"endpoint (SMART Backend Services, see {base}/.well-known/smart-configuration) or "
        "from a trusted issuer. SMART v1 and v2 scopes; patient/ scopes see only their "
        "patient's compartment.",
    }


def _subscription_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Topic discovery in R4 (Subscriptions Backport IG): the topics' canonical URLs in the
    IG's extension on the Subscription resource, and the backport profile."""
    listed = [
        {"url": subscriptions.TOPIC_EXTENSION, "valueCanonical": topic.url}
        for topic in subscriptions.topics_listed()
    ]
    topics = "; ".join(
        f"{t.name} (focus {t.resource}; filters {', '.join(t.filters)}): {t.description}"
        for t in subscriptions.topics_listed()
    )
    return {
        "extension": listed,
        **entry,
        "supportedProfile": [subscriptions.PROFILE],
        "documentation": "Topic-based (R4 Subscriptions Backport IG), channel rest-hook, "
        "payload application/fhir+json with content empty, id-only or full-resource; "
        "notifications are signed (HMAC-SHA256, header X-Careplan-Signature). Topics: " + topics,
    }


@router.get(
    "/fhir/metadata",
    name="fhir:capabilities",
    operation_id="capabilities",
    summary="The CapabilityStatement of this server",
    response_class=Response,
    responses={
        400: {
            "$ref": "#/components/responses/Error400",
            "description": "A parameter holds a control character (OperationOutcome)",
        }
    },
)
async def metadata(request: Request) -> Response:
    return fhir_response(request, capability_statement(request))
