"""OpenAPI metadata for the FHIR routes: operation ids, parameters, bodies, responses, headers.

Routes validate raw bodies themselves (service/fhir/validate.py), so they declare no pydantic
body: this module describes bodies and answers with ``$ref``s to the component schemas of
``service.api.openapi`` (``<Type>Input`` for request bodies, ``<Type>`` for responses), and
:func:`build_openapi` puts those components into the document.

``interaction_docs(interaction, type)`` and ``operation_docs(...)`` return keyword arguments
for ``router.add_api_route(**docs)``.
"""

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.openapi import component_schemas, input_name, searchset_name
from service.api.openapi import examples as schema_examples
from service.api.openapi.base import DATETIME_PATTERN, ID_PATTERN, URI_PATTERN
from service.api.openapi.security import authorization_schemas, security_schemes
from service.fhir.search_params import (
    INCLUDES,
    include_targets,
    params_for,
    revinclude_sources,
)
from service.settings import Settings
from service.usecases.crud import VERSIONED_UPDATE_TYPES

FHIR_JSON = "application/fhir+json"
REF = "#/components/schemas/"

_VERB = {
    "read": ("read", "Read the current version of a {t}"),
    "vread": ("vread", "Read one version of a {t}"),
    "create": ("create", "Create a {t} (conditional with If-None-Exist)"),
    "update": ("update", "Update or create a {t} by id (optimistic locking with If-Match)"),
    "delete": ("delete", "Delete a {t}; reads then answer 410 Gone"),
    "search-type": ("search", "Search {t} resources"),
    "search-type-post": ("searchPost", "Search {t} resources with a form body"),
    "history-type": ("history", "History of all {t} resources"),
    "history-instance": ("historyInstance", "History of one {t}"),
}

ERROR_TEXT = {
    400: "Malformed request, resource or parameter",
    401: "No bearer token, or one that is not valid here (WWW-Authenticate says why)",
    403: "The token's scopes do not allow this (WWW-Authenticate: insufficient_scope)",
    404: "Unknown resource or route",
    406: "The Accept header or _format asks for something other than JSON",
    409: "Concurrent update: retry",
    410: "The resource has been deleted",
    412: "If-Match names another version, or If-None-Exist matches more than one resource",
    413: "The body is larger than the configured limit",
    415: "Content-Type is not application/fhir+json or application/json",
    422: "A business rule of the protocol is violated",
    428: "If-Match is missing: this type's updates must name the version they were read at",
    500: "Unexpected server error (no internals are disclosed)",
    503: "The store is temporarily unavailable; retry after Retry-After seconds",
}
# Every route can answer these: content negotiation, the store, the unexpected.
_ALWAYS = (406, 500, 503)
_ERRORS: dict[str, tuple[int, ...]] = {
    "read": (400, 404, 410),
    "vread": (400, 404, 410),
    "create": (400, 412, 413, 415, 422),
    "update": (400, 409, 412, 413, 415, 422),
    "delete": (400, 404, 409),
    "search-type": (400,),
    "search-type-post": (400, 413, 415),
    "history-type": (400,),
    "history-instance": (400, 404, 410),
}

_PREFIXES = "(eq|ne|gt|lt|ge|le|sa|eb|ap)?"
_REF_VALUE = r"(?:[^/,|]+|[^,|]*://[^,|]*|[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:\|[^,]*)?"
_NUMBER = r"-?[0-9]+(\.[0-9]+)?"
# What the search parser accepts per parameter type (service/store/query.py).
_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "date": {"type": "string", "pattern": f"^{_PREFIXES}{DATETIME_PATTERN[1:]}"},
    "number": {"type": "string", "pattern": f"^{_PREFIXES}{_NUMBER}$"},
    "quantity": {"type": "string", "pattern": rf"^{_PREFIXES}{_NUMBER}(\|[^|,]*\|[^|,]+)?$"},
    # Comma-separated: a bare id, Type/id, or an absolute URL (with ://), each [|version].
    "reference": {"type": "string", "pattern": f"^{_REF_VALUE}(,{_REF_VALUE})*$"},
    "token": {"type": "string", "minLength": 1},
    "string": {"type": "string", "minLength": 1},
    "uri": {"type": "string", "minLength": 1},
}

ETAG = {
    "description": 'Version of the resource, W/"<versionId>"',
    "schema": {"type": "string", "pattern": '^W/"[0-9]+"$'},
}
LAST_MODIFIED = {
    "description": "When this version was stored (HTTP date)",
    "schema": {"type": "string"},
}
LOCATION = {
    "description": "URL of the version written: <base>/<Type>/<id>/_history/<versionId>",
    "schema": {"type": "string", "format": "uri"},
}
RETRY_AFTER = {"description": "Seconds to wait", "schema": {"type": "string"}}
WWW_AUTHENTICATE = {
    "description": 'Bearer realm="...", error="invalid_token" or "insufficient_scope"',
    "schema": {"type": "string"},
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"{REF}{name}"}


def fhir_content(schema: dict[str, Any], examples: dict[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = examples
    # application/json is served when asked for (Accept or _format), with the same body.
    return {FHIR_JSON: media, "application/json": {"schema": schema}}


def error_name(status: int) -> str:
    return f"Error{status}"


def error_components() -> dict[str, dict[str, Any]]:
    """components/responses: one OperationOutcome answer per error status."""
    components: dict[str, dict[str, Any]] = {}
    for status, text in ERROR_TEXT.items():
        response: dict[str, Any] = {
            "description": f"{text} (OperationOutcome)",
            "content": fhir_content(ref("OperationOutcome")),
        }
        if status == 503:
            response["headers"] = {"Retry-After": RETRY_AFTER}
        if status in (401, 403):
            response["headers"] = {"WWW-Authenticate": WWW_AUTHENTICATE}
        components[error_name(status)] = response
    return components


def error_responses(statuses: tuple[int, ...]) -> dict[int | str, dict[str, Any]]:
    """OperationOutcome answers for the given statuses (and the ones every route may give)."""
    return {
        status: {
            "$ref": f"#/components/responses/{error_name(status)}",
            "description": f"{ERROR_TEXT[status]} (OperationOutcome)",
        }
        for status in sorted({*statuses, *_ALWAYS})
    }


def _header(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": schema or {"type": "string"},
        "description": description,
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema or {"type": "string", "minLength": 1},
        "description": description,
    }


PREFER_RETURN = _header(
    "Prefer",
    "return=representation (the resource, default) | return=OperationOutcome (an "
    "informational outcome) | return=minimal (no body; headers only)",
    # RFC 7240: a preference the server does not know is ignored, so any value is valid.
    {"type": "string", "examples": ["return=representation", "return=OperationOutcome"]},
)
ELEMENTS = _query(
    "_elements",
    "Comma-separated top-level elements to return (an empty value is ignored)",
    {"type": "string"},
)
SINCE = _query(
    "_since",
    "Only versions since this instant (an empty value is ignored)",
    {
        "anyOf": [
            {"type": "string", "pattern": DATETIME_PATTERN},
            {"type": "string", "maxLength": 0},
        ]
    },
)
# The server takes a page size of at most 18 digits (a 64-bit SQL integer) and clamps it to
# CAREPLAN_MAX_PAGE_SIZE; more digits are a 400.
COUNT = _query(
    "_count",
    "Page size (clamped to the server's largest page size)",
    {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
)
FORMAT = _query(
    "_format",
    "Response format: json, application/fhir+json or application/json (else 406)",
    {"type": "string", "enum": ["json", "application/fhir+json", "application/json"]},
)


def _sortable(resource_type: str) -> list[str]:
    from service.fhir.search import SORTABLE

    return [
        name for name, p in params_for(resource_type).items() if p.type in SORTABLE or name == "_id"
    ]


def param_schema_name(param_type: str) -> str:
    return f"Search{param_type.capitalize()}"


def search_parameters(resource_type: str) -> list[dict[str, Any]]:
    params = [
        _query(p.name, f"{p.type}: {p.description}", ref(param_schema_name(p.type)))
        for p in params_for(resource_type).values()
    ]
    sortable = _sortable(resource_type)
    params += [
        COUNT,
        _query(
            "_sort",
            f"Sort order: one of {', '.join(sortable)}, '-' for descending",
            {"type": "string", "enum": [*sortable, *(f"-{s}" for s in sortable)]},
        ),
        _query(
            "_summary",
            "true | text | data | count | false",
            {"type": "string", "enum": ["true", "text", "data", "count", "false"]},
        ),
        ELEMENTS,
        _query(
            "_total",
            "none | estimate | accurate",
            {"type": "string", "enum": ["none", "estimate", "accurate"]},
        ),
        FORMAT,
    ]
    includes = INCLUDES.get(resource_type, ())
    if includes:
        values = []
        for name in includes:
            values.append(f"{resource_type}:{name}")
            values += [f"{resource_type}:{name}:{t}" for t in include_targets(resource_type, name)]
        params.append(
            _query(
                "_include",
                "Add the referenced resources to the page (Type:param, or Type:param:TargetType "
                "for one target type only)",
                {"type": "string", "enum": values},
            )
        )
    revincludes = revinclude_sources(resource_type)
    if revincludes:
        params.append(
            _query(
                "_revinclude",
                f"Add the resources whose parameter points at a match (Source:param, e.g. "
                f"{revincludes[0]}); at most 1000 a page",
                {
                    "type": "string",
                    "enum": [*revincludes, *(f"{r}:{resource_type}" for r in revincludes)],
                },
            )
        )
    return params


def _if_none_exist(resource_type: str) -> dict[str, Any]:
    tokens = [n for n, p in params_for(resource_type).items() if p.type in ("token", "string")]
    criterion = rf"({'|'.join(tokens)})=[^&=,?\\]+"
    # A search has at most CAREPLAN_MAX_SEARCH_CLAUSES criteria (400 beyond): the default.
    most = Settings.model_fields["max_search_clauses"].default
    return _header(
        "If-None-Exist",
        "Conditional create: search criteria (e.g. identifier=system|value). One match: "
        "answer 200 with it, none: create, several: 412. Any search parameter of the type "
        "may be used; the schema spells out the token and string ones. At most "
        f"{most} criteria (CAREPLAN_MAX_SEARCH_CLAUSES), else 400.",
        # An empty header is a 400: it must not turn into an unconditional create.
        {"type": "string", "pattern": rf"^{criterion}(&{criterion}){{0,{most - 1}}}$"},
    )


def _resource_response(
    resource_type: str, description: str, headers: dict[str, Any], minimal_ok: bool
) -> dict[str, Any]:
    schema: dict[str, Any] = ref(resource_type)
    if minimal_ok:
        # Prefer: return=OperationOutcome answers with an informational outcome instead.
        schema = {"anyOf": [ref(resource_type), ref("OperationOutcome")]}
        description += "; no body with Prefer: return=minimal"
    return {"description": description, "headers": headers, "content": fhir_content(schema)}


def interaction_docs(interaction: str, resource_type: str) -> dict[str, Any]:
    prefix, summary = _VERB[interaction]
    extra: dict[str, Any] = {}
    parameters: list[dict[str, Any]] = []
    responses: dict[int | str, dict[str, Any]] = {}
    read_headers = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
    write_headers = {**read_headers, "Location": LOCATION}
    if interaction in ("read", "vread"):
        responses[200] = _resource_response(resource_type, "The resource", read_headers, False)
        examples = schema_examples.response_examples(resource_type)
        if examples:
            responses[200]["content"][FHIR_JSON]["examples"] = examples
    if interaction == "read":
        parameters += [
            _query(
                "_summary",
                "Return a subset (mandatory elements may then be missing)",
                {"type": "string", "enum": ["true", "text", "data", "count", "false"]},
            ),
            ELEMENTS,
        ]
    if interaction == "create":
        parameters += [_if_none_exist(resource_type), PREFER_RETURN]
        responses[201] = _resource_response(resource_type, "Created", write_headers, True)
        responses[200] = _resource_response(
            resource_type, "If-None-Exist matched one resource: that one", read_headers, True
        )
    errors = _ERRORS[interaction]
    if interaction == "update":
        versioned_update = resource_type in VERSIONED_UPDATE_TYPES
        if_match = _header(
            "If-Match",
            'Optimistic locking: W/"<versionId>" of the version you read (else 412)',
            {"type": "string", "pattern": '^(W/)?"[0-9]{1,18}"$'},
        )
        if versioned_update:
            # The service changes this type with its decisions: no blind overwrite (428).
            if_match["required"] = True
            if_match["description"] += "; required for this type (else 428)"
            errors = (*errors, 428)
            summary = "Update a {t} by id (If-Match required; create with POST)"
        parameters += [if_match, PREFER_RETURN]
        responses[200] = _resource_response(resource_type, "Updated", write_headers, True)
        created = (
            "Created again after its deletion" if versioned_update else "Created with the given id"
        )
        responses[201] = _resource_response(resource_type, created, write_headers, True)
    if interaction == "delete":
        responses[204] = {
            "description": "Deleted (also when it was already deleted)",
            "headers": {"ETag": ETAG},
        }
    if interaction in ("search-type", "search-type-post"):
        parameters += search_parameters(resource_type)
        responses[200] = {
            "description": "A page of matches",
            "content": fhir_content(ref(searchset_name(resource_type))),
        }
    if interaction.startswith("history"):
        parameters += [
            SINCE,
            COUNT,
        ]
        responses[200] = {"description": "History Bundle", "content": fhir_content(ref("Bundle"))}
    if interaction not in ("search-type", "search-type-post"):
        parameters.append(FORMAT)
    if interaction in ("create", "update"):
        body: dict[str, Any] = {"schema": ref(input_name(resource_type))}
        # Examples have no id, so they fit create only (an update's id must match the URL).
        examples = schema_examples.request_examples(resource_type)
        if examples and interaction == "create":
            body["examples"] = examples
        extra["requestBody"] = {
            "required": True,
            "description": f"A {resource_type}; on create any id is ignored, on update it must "
            "equal the URL id",
            "content": {FHIR_JSON: body, "application/json": {"schema": body["schema"]}},
        }
    if interaction == "search-type-post":
        extra["requestBody"] = {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "description": "The same parameters as the GET search (merged)",
                        "properties": {
                            p["name"]: p["schema"]
                            for p in search_parameters(resource_type)
                            if p["name"] != "_format"  # read from the URL only
                        },
                        # Unknown parameters are ignored (unless Prefer: handling=strict).
                        "additionalProperties": {"type": "string"},
                    }
                }
            },
        }
    extra["parameters"] = parameters
    responses.update(error_responses(errors))
    return {
        "operation_id": f"{prefix}{resource_type}",
        "summary": summary.format(t=resource_type),
        "openapi_extra": extra,
        "responses": responses,
    }


def operation_docs(
    name: str,
    resource_type: str | None,
    request_schema: str | None,
    response_schema: str,
    summary: str,
    *,
    operation_id: str,
    description: str | None = None,
    errors: tuple[int, ...] = (400, 404, 413, 415, 422),
    request_examples: dict[str, Any] | None = None,
    response_examples: dict[str, Any] | None = None,
    success_status: int = 200,
    success_headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Docs for a FHIR operation route (``$apply``, ``$submit-session``, ...).

    ``request_schema``/``response_schema`` are component names (``"ParametersInput"``,
    ``"CarePlan"``, ``"Bundle"``, ...; see service.api.openapi.component_schemas). Use them as
    ``router.add_api_route(path, handler, methods=["POST"], tags=[...], **operation_docs(...))``.
    """
    extra: dict[str, Any] = {"parameters": [FORMAT]}
    if request_schema is not None:
        media: dict[str, Any] = {"schema": ref(request_schema)}
        if request_examples:
            media["examples"] = request_examples
        extra["requestBody"] = {
            "required": True,
            "content": {FHIR_JSON: media, "application/json": {"schema": ref(request_schema)}},
        }
    responses: dict[int | str, dict[str, Any]] = {
        success_status: {
            "description": f"{name} result",
            "content": fhir_content(ref(response_schema), response_examples),
            **({"headers": success_headers} if success_headers else {}),
        }
    }
    responses.update(error_responses(errors))
    docs: dict[str, Any] = {
        "operation_id": operation_id,
        "summary": summary,
        "openapi_extra": extra,
        "responses": responses,
    }
    if description:
        docs["description"] = description
    if resource_type:
        docs["tags"] = [resource_type]
    return docs


_DESCRIPTION = """FHIR R4 (4.0.1) care-plan service for the Flexion in Lying home exercise protocol.

* Bodies are FHIR JSON (`application/fhir+json`; `application/json` is accepted).
* Request schemas (`<Type>Input`) list the elements this service reads; the server also accepts
  and stores any other valid R4 element. Response schemas (`<Type>`) are open: stored resources
  may carry more elements.
* Every error is an `OperationOutcome` with the HTTP status telling its class.
* Versions: `ETag: W/"<versionId>"`; send it back in `If-Match` to update safely.
"""


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: FastAPI's routes plus the slim model components."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=_DESCRIPTION,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
    )
    document["info"]["license"] = {"name": "Proprietary", "identifier": "LicenseRef-Proprietary"}
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(component_schemas())
    schemas.update(authorization_schemas())
    schemas.update({param_schema_name(t): s for t, s in _PARAM_SCHEMAS.items()})
    components["schemas"] = dict(sorted(schemas.items()))
    components["responses"] = error_components()
    components["securitySchemes"] = security_schemes()
    _prune(components, document["paths"])
    for operation in _operations(document):
        _fix_operation(operation)
        operation_id = operation.get("operationId", "")
        override = SYSTEM_DOCS.get(operation_id) or OPERATION_DOCS.get(operation_id)
        if override:
            _merge(operation, override)
        if operation.get("security"):
            # Every protected route can refuse the caller.
            responses = operation.setdefault("responses", {})
            for status in (401, 403):
                responses.setdefault(
                    str(status),
                    {
                        "$ref": f"#/components/responses/{error_name(status)}",
                        "description": f"{ERROR_TEXT[status]} (OperationOutcome)",
                    },
                )
            operation["responses"] = dict(sorted(responses.items()))
    app.openapi_schema = document
    return document


def _prune(components: dict[str, Any], paths: dict[str, Any]) -> None:
    """Drop component schemas nothing references (e.g. the open twin of an input-only one)."""
    import json

    schemas = components["schemas"]
    reachable: set[str] = set()
    todo = [paths, components.get("responses", {}), OPERATION_DOCS, SYSTEM_DOCS]
    while todo:
        text = json.dumps(todo.pop())
        for name in re.findall(r'"#/components/schemas/([^"]+)"', text):
            if name not in reachable and name in schemas:
                reachable.add(name)
                todo.append(schemas[name])
    for name in list(schemas):
        if name not in reachable:
            del schemas[name]


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        operation
        for item in document.get("paths", {}).values()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete", "patch", "head", "options")
    ]


_PATH_PARAM_SCHEMAS = {
    "id": {"type": "string", "pattern": ID_PATTERN},
    "vid": {"type": "string", "pattern": "^[0-9]+$"},
}


def _fix_operation(operation: dict[str, Any]) -> None:
    """FastAPI's additions: typed path parameters, and no {"detail": ...} 422 (never sent)."""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" and parameter["name"] in _PATH_PARAM_SCHEMAS:
            parameter["schema"] = dict(_PATH_PARAM_SCHEMAS[parameter["name"]])
            parameter.pop("title", None)
    responses = operation.get("responses", {})
    if "HTTPValidationError" in str(responses.get("422", "")):
        del responses["422"]


def _merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if key == "parameters" and isinstance(target.get(key), list):
            known = {(p.get("name"), p.get("in")) for p in target[key]}
            target[key] = target[key] + [
                p for p in value if (p.get("name"), p.get("in")) not in known
            ]
        elif key != "schema" and isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


# Routes declared outside this module (system.py, capability.py) get their docs here, by
# operationId, so those files stay free of OpenAPI detail.
SYSTEM_DOCS: dict[str, dict[str, Any]] = {
    "transaction": {
        "description": "A batch answers each entry on its own (batch-response); a "
        "transaction runs all entries in one database transaction and answers "
        "transaction-response, or one error for the whole Bundle.",
        "parameters": [FORMAT],
        "requestBody": {
            "required": True,
            "content": {
                FHIR_JSON: {"schema": ref("BatchOrTransactionInput")},
                "application/json": {"schema": ref("BatchOrTransactionInput")},
            },
        },
        "responses": {
            "200": {
                "description": "batch-response or transaction-response Bundle",
                "content": fhir_content(ref("Bundle")),
            },
            **{
                str(k): v
                for k, v in error_responses((400, 404, 409, 410, 412, 413, 415, 422, 428)).items()
            },
        },
    },
    "historySystem": {
        "parameters": [
            SINCE,
            COUNT,
            FORMAT,
        ],
        "responses": {
            "200": {"description": "History Bundle", "content": fhir_content(ref("Bundle"))},
            **{str(k): v for k, v in error_responses((400,)).items()},
        },
    },
    "capabilities": {
        "parameters": [FORMAT],
        "responses": {
            "200": {
                "description": "The CapabilityStatement",
                "content": fhir_content(ref("CapabilityStatement")),
            },
            **{str(k): v for k, v in error_responses(()).items()},
        },
    },
}


def _openapi_keys(docs: dict[str, Any]) -> dict[str, Any]:
    """operation_docs() output (add_api_route keywords) as OpenAPI operation keys."""
    operation = dict(docs["openapi_extra"])
    operation["responses"] = {str(k): v for k, v in docs["responses"].items()}
    for key in ("summary", "description"):
        if key in docs:
            operation[key] = docs[key]
    return operation


def _subject_query(required: bool = True) -> dict[str, Any]:
    from service.api.openapi.components import PATIENT_REFERENCE

    return {
        "name": "subject",
        "in": "query",
        "required": required,
        "schema": {"type": "string", "pattern": PATIENT_REFERENCE},
        "description": "The patient: Patient/<id>",
    }


_URL_QUERY = {
    "name": "url",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "pattern": URI_PATTERN},
    "description": "Canonical url[|version] of the PlanDefinition",
    "example": "https://fhir.flexion-careplan.org/PlanDefinition/flexion-in-lying-protocol",
}
_APPLY_ERRORS = (400, 404, 410, 422)
_SESSION_ERRORS = (400, 404, 409, 410, 413, 415, 422)


def _operation_overrides() -> dict[str, dict[str, Any]]:
    apply_doc = (
        "The CarePlan the protocol gives the patient now; it is not stored: POST it to "
        "/fhir/CarePlan to enrol the patient.\n\n" + schema_examples.eligibility_markdown()
    )
    docs = {
        "applyPlanDefinition": operation_docs(
            "$apply",
            None,
            None,
            "CarePlan",
            "Apply the protocol to a patient",
            operation_id="applyPlanDefinition",
            description=apply_doc,
            errors=_APPLY_ERRORS,
        ),
        "applyPlanDefinitionByUrl": operation_docs(
            "$apply",
            None,
            None,
            "CarePlan",
            "Apply the protocol (by canonical url)",
            operation_id="applyPlanDefinitionByUrl",
            description=apply_doc,
            errors=_APPLY_ERRORS,
        ),
        "applyPlanDefinitionPost": operation_docs(
            "$apply",
            None,
            "ApplyParametersInput",
            "CarePlan",
            "Apply the protocol to a patient (Parameters body)",
            operation_id="applyPlanDefinitionPost",
            description=apply_doc,
            errors=(*_APPLY_ERRORS, 413, 415),
        ),
        "applyPlanDefinitionByUrlPost": operation_docs(
            "$apply",
            None,
            "ApplyByUrlParametersInput",
            "CarePlan",
            "Apply the protocol (by canonical url, Parameters body)",
            operation_id="applyPlanDefinitionByUrlPost",
            description=apply_doc,
            errors=(*_APPLY_ERRORS, 413, 415),
        ),
        "submitSession": operation_docs(
            "$submit-session",
            None,
            "SessionBundleInput",
            "Parameters",
            "Submit a session of Flexion in Lying and get the decision",
            operation_id="submitSession",
            description="Stores the session (panel and repetitions), decides, and answers "
            "Parameters: 'decision' (the GuidanceResponse), 'carePlan' (the updated CarePlan) "
            "and one 'created' part per follow-up resource. The body may also be Parameters "
            "with the Bundle in a part 'session'. A resubmitted session gets its earlier "
            "answer.",
            errors=_SESSION_ERRORS,
            request_examples={"session": schema_examples.example("SessionBundle")},
        ),
        "evaluateCarePlan": operation_docs(
            "$evaluate",
            None,
            "EvaluateParametersInput",
            "Parameters",
            "Re-evaluate the care plan from stored data (e.g. when a retry window opens)",
            operation_id="evaluateCarePlan",
            errors=_SESSION_ERRORS,
        ),
    }
    docs |= _subscription_operations()
    out = {name: _openapi_keys(d) for name, d in docs.items()}
    out["applyPlanDefinition"]["parameters"].insert(0, _subject_query())
    out["applyPlanDefinitionByUrl"]["parameters"][:0] = [_subject_query(), _URL_QUERY]
    submit = out["submitSession"]["requestBody"]["content"]
    for media in submit.values():
        media["schema"] = {
            "anyOf": [ref("SessionBundleInput"), ref("SubmitSessionParametersInput")]
        }
    out["evaluateCarePlan"]["requestBody"]["required"] = False
    out["subscriptionStatusAll"]["parameters"].insert(0, _ID_QUERY)
    for name in ("subscriptionEvents",):
        out[name]["parameters"][:0] = _EVENTS_QUERY
    return out


_ID_QUERY = {
    "name": "id",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "pattern": ID_PATTERN},
    "description": "A Subscription id (repeat for several); none: every subscription",
}
_EVENTS_QUERY = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
        "description": text,
    }
    for name, text in (
        ("eventsSinceNumber", "The first event number (inclusive); default 1"),
        ("eventsUntilNumber", "The last event number (inclusive)"),
    )
] + [
    {
        "name": "content",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["empty", "id-only", "full-resource"]},
        "description": "Payload content of the answer; default the subscription's own",
    }
]


def _subscription_operations() -> dict[str, dict[str, Any]]:
    status = (
        "A searchset Bundle of backport-subscription-status-r4 Parameters (type query-status): "
        "status, topic, events-since-subscription-start and, in error, why."
    )
    events = (
        "A history Bundle like the notifications (type query-event): the events from "
        "eventsSinceNumber to eventsUntilNumber (at most 1000), with their numbers, timestamps "
        "and foci, and with full-resource content the focus at the version the event is about."
    )
    errors = (400, 404, 410)
    posted = (*errors, 413, 415)
    docs = {}
    for suffix, request, codes in (("", None, errors), ("Post", "ParametersInput", posted)):
        docs[f"subscriptionStatus{suffix}"] = operation_docs(
            "$status",
            None,
            request,
            "Bundle",
            "The status of a subscription",
            operation_id=f"subscriptionStatus{suffix}",
            description=status,
            errors=codes,
        )
        docs[f"subscriptionStatusAll{suffix}"] = operation_docs(
            "$status",
            None,
            request,
            "Bundle",
            "The status of subscriptions (all, or by id)",
            operation_id=f"subscriptionStatusAll{suffix}",
            description=status,
            errors=codes,
        )
        docs[f"subscriptionEvents{suffix}"] = operation_docs(
            "$events",
            None,
            request,
            "Bundle",
            "A subscription's past events",
            operation_id=f"subscriptionEvents{suffix}",
            description=events,
            errors=codes,
        )
    return docs


OPERATION_DOCS = _operation_overrides()


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and /openapi.json, ``careplan openapi``) use build_openapi."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
