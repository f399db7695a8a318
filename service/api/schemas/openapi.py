"""Turn the slim models into OpenAPI component schemas: an open and a closed family.

``<Name>`` (responses) is open: the server returns other valid R4 elements it stored, and a
subsetted read (``_summary``, ``_elements``) may leave out mandatory elements, so only
``resourceType`` is required at the top of a resource. ``<Name>Input`` (request bodies) is
closed with ``additionalProperties: false`` at every level: it lists exactly the elements this
service reads. The server accepts other valid R4 elements too, but a schema that allowed
arbitrary extra properties would promise that *any* extra property is accepted, which is
false (the server rejects unknown elements with 400). So the honest contract is the closed
list, with that sentence in every description.

Both families: no ``null`` anywhere, and ``minProperties: 1`` on every element without a
required property (FHIR ele-1: the server rejects ``{}``).
"""

import copy
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api.schemas import base, other
from service.api.schemas.resources import STORED_TYPES

REF = "#/components/schemas/"

# The request patterns narrow dates to days a month has; responses carry what the server
# stored, which the R4 regular expressions (wider: any day 01-31) describe.
_R4_DATE = (
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]"
    r"|3[0-1]))?)?$"
)
_R4_DATETIME = (
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]"
    r"|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3])"
    r":[0-5][0-9]|14:00)))?)?)?$"
)
_R4_INSTANT = (
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]"
    r"|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3])"
    r":[0-5][0-9]|14:00))$"
)
_RESPONSE_PATTERNS = {
    base.DATE_PATTERN: _R4_DATE,
    base.DATETIME_PATTERN: _R4_DATETIME,
    base.INSTANT_PATTERN: _R4_INSTANT,
}

RESPONSE_ONLY: tuple[type[BaseModel], ...] = (
    other.OperationOutcome,
    other.Bundle,
    other.AnyResource,
    other.CapabilityStatement,
)
INPUT_ROOTS: tuple[type[BaseModel], ...] = (
    *STORED_TYPES.values(),
    other.Parameters,
    other.TransactionEntryRequest,
)


def _walk(node: Any, fn: Any) -> Any:
    if isinstance(node, dict):
        node = fn({k: _walk(v, fn) for k, v in node.items()})
    elif isinstance(node, list):
        node = [_walk(v, fn) for v in node]
    return node


def _clean(node: dict[str, Any]) -> dict[str, Any]:
    if "default" in node and node["default"] is None:
        del node["default"]
    props = node.get("properties")
    if isinstance(props, dict):
        for prop in props.values():
            if isinstance(prop, dict):
                prop.pop("title", None)
        node.pop("additionalProperties", None)
        if not node.get("required"):
            node["minProperties"] = 1
    return node


def _refs(node: Any) -> set[str]:
    found: set[str] = set()

    def visit(n: dict[str, Any]) -> dict[str, Any]:
        ref = n.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF):
            found.add(ref[len(REF) :])
        return n

    _walk(node, visit)
    return found


def _closed(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(REF):
        node["$ref"] = f"{ref}Input"
    if "properties" in node:
        node["additionalProperties"] = False
    return node


def _open(node: dict[str, Any]) -> dict[str, Any]:
    pattern = node.get("pattern")
    if pattern in _RESPONSE_PATTERNS:
        node["pattern"] = _RESPONSE_PATTERNS[pattern]
    return node


@cache
def _definitions() -> dict[str, dict[str, Any]]:
    models = [*INPUT_ROOTS, *RESPONSE_ONLY]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF + "{model}")
    return {name: _walk(schema, _clean) for name, schema in top["$defs"].items()}


def _input_names(defs: dict[str, dict[str, Any]]) -> list[str]:
    todo = [m.__name__ for m in INPUT_ROOTS]
    seen: list[str] = []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        todo.extend(_refs(defs[name]))
    return sorted(seen)


def _transaction_input() -> dict[str, dict[str, Any]]:
    resources = sorted(STORED_TYPES)
    return {
        "TransactionEntryInput": {
            "type": "object",
            "title": "TransactionEntryInput",
            "description": "One batch/transaction entry: a request and, for POST and PUT, the "
            "resource. fullUrl urn:uuid:... values are replaced by the assigned ids in every "
            "reference of a transaction.",
            "properties": {
                "fullUrl": {"type": "string", "pattern": base.URI_PATTERN},
                "resource": {
                    "oneOf": [{"$ref": f"{REF}{t}Input"} for t in resources],
                    "discriminator": {
                        "propertyName": "resourceType",
                        "mapping": {t: f"{REF}{t}Input" for t in resources},
                    },
                },
                "request": {"$ref": f"{REF}TransactionEntryRequestInput"},
            },
            "required": ["request"],
            "additionalProperties": False,
        },
        "TransactionBundleInput": {
            "type": "object",
            "title": "TransactionBundleInput",
            "description": "A batch (entries run one by one, each answered on its own) or a "
            "transaction (all entries in one database transaction: all succeed or none).",
            "properties": {
                "resourceType": {"const": "Bundle", "type": "string"},
                "type": {"enum": ["batch", "transaction"], "type": "string"},
                "entry": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": f"{REF}TransactionEntryInput"},
                },
            },
            "required": ["resourceType", "type"],
            "additionalProperties": False,
        },
    }


def _searchset(resource_type: str, includes: bool) -> dict[str, Any]:
    resource: dict[str, Any] = {"$ref": f"{REF}{resource_type}"}
    if includes:
        # _include adds the referenced resources (search.mode = include) of other types.
        resource = {"anyOf": [resource, {"$ref": f"{REF}Resource"}]}
    return {
        "type": "object",
        "title": f"{resource_type}Searchset",
        "description": f"A page of {resource_type} search results (type searchset); "
        "link 'next' holds the next page. With _summary=count only total is given.",
        "properties": {
            "resourceType": {"const": "Bundle", "type": "string"},
            "id": {"type": "string", "pattern": base.ID_PATTERN},
            "meta": {"$ref": f"{REF}Meta"},
            "type": {"const": "searchset", "type": "string"},
            "total": {"type": "integer", "minimum": 0},
            "link": {"type": "array", "minItems": 1, "items": {"$ref": f"{REF}BundleLink"}},
            "entry": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "minProperties": 1,
                    "properties": {
                        "fullUrl": {"type": "string", "pattern": base.URI_PATTERN},
                        "resource": resource,
                        "search": {"$ref": f"{REF}BundleEntrySearch"},
                    },
                },
            },
        },
        "required": ["resourceType", "type"],
    }


def searchset_name(resource_type: str) -> str:
    return f"{resource_type}Searchset"


def input_name(name: str) -> str:
    return f"{name}Input"


@cache
def _components() -> dict[str, dict[str, Any]]:
    from service.fhir.search_params import INCLUDES

    defs = _definitions()
    components: dict[str, dict[str, Any]] = {}
    for name, schema in defs.items():
        response = _walk(copy.deepcopy(schema), _open)
        props = response.get("properties", {})
        if "resourceType" in props and name in STORED_TYPES:
            # A subsetted read (_summary, _elements) may leave out mandatory elements.
            response["required"] = ["resourceType"]
        components[name] = response
    for name in _input_names(defs):
        closed = _walk(copy.deepcopy(defs[name]), _closed)
        closed["title"] = input_name(name)
        components[input_name(name)] = closed
    components.update(_transaction_input())
    for resource_type in STORED_TYPES:
        components[searchset_name(resource_type)] = _searchset(
            resource_type, bool(INCLUDES.get(resource_type))
        )
    return dict(sorted(components.items()))


def component_schemas() -> dict[str, dict[str, Any]]:
    """Every schema the OpenAPI document references, by component name (a fresh copy)."""
    return copy.deepcopy(_components())
