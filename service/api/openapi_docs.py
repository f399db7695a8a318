"""OpenAPI metadata for the generated FHIR routes: operation ids, parameters, bodies, errors."""

from typing import Any

from service.fhir.search_params import params_for

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
_ERRORS = {
    "400": "Malformed request or resource (OperationOutcome)",
    "404": "Unknown resource (OperationOutcome)",
    "406": "Unsupported response format (OperationOutcome)",
    "410": "Resource deleted (OperationOutcome)",
    "412": "Version conflict (OperationOutcome)",
    "413": "Body too large (OperationOutcome)",
    "415": "Unsupported Content-Type (OperationOutcome)",
    "422": "Business rule violated (OperationOutcome)",
}


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema or {"type": "string"},
        "description": description,
    }


def search_parameters(resource_type: str) -> list[dict[str, Any]]:
    params = [
        _query(p.name, f"{p.type}: {p.description}") for p in params_for(resource_type).values()
    ]
    params += [
        _query("_count", "Page size", {"type": "integer", "minimum": 0}),
        _query("_sort", "Sort order, e.g. -_lastUpdated or date"),
        _query(
            "_summary",
            "true | text | data | count | false",
            {"type": "string", "enum": ["true", "text", "data", "count", "false"]},
        ),
        _query("_elements", "Comma-separated top-level elements to return"),
        _query("_include", f"{resource_type}:<reference param>"),
        _query(
            "_total",
            "none | estimate | accurate",
            {"type": "string", "enum": ["none", "estimate", "accurate"]},
        ),
        _query("_cursor", "Paging cursor from a next/previous link"),
    ]
    return params


def interaction_docs(interaction: str, resource_type: str) -> dict[str, Any]:
    prefix, summary = _VERB[interaction]
    extra: dict[str, Any] = {}
    parameters: list[dict[str, Any]] = []
    if interaction in ("search-type", "search-type-post"):
        parameters = search_parameters(resource_type)
    if interaction in ("read",):
        parameters = [_query("_summary", "Subset"), _query("_elements", "Subset by elements")]
    if interaction == "create":
        parameters = [
            _header("If-None-Exist", "Conditional create: search criteria, e.g. identifier=s|v"),
            _header("Prefer", "return=minimal | representation | OperationOutcome"),
        ]
    if interaction == "update":
        parameters = [
            _header("If-Match", 'Optimistic locking: W/"<versionId>"'),
            _header("Prefer", "return=minimal | representation | OperationOutcome"),
        ]
    if interaction.startswith("history"):
        parameters = [
            _query("_since", "Only versions since this instant"),
            _query("_count", "Page size", {"type": "integer", "minimum": 0}),
            _query("_cursor", "Paging cursor from a next link"),
        ]
    if parameters:
        extra["parameters"] = parameters
    if interaction in ("create", "update"):
        extra["requestBody"] = {
            "required": True,
            "content": {"application/fhir+json": {"schema": {"type": "object"}}},
        }
    return {
        "operation_id": f"{prefix}{resource_type}",
        "summary": summary.format(t=resource_type),
        "openapi_extra": extra,
        "responses": {code: {"description": text} for code, text in _ERRORS.items()},
    }
