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

from service.api.openapi import base, other
from service.api.openapi.resources import READ_ONLY_TYPES, STORED_TYPES

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
    *READ_ONLY_TYPES.values(),
    other.OperationOutcome,
    other.Bundle,
    other.Resource,
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
    if isinstance(props, dict) and node.get("type") == "object":
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
    if ref == f"{REF}Resource":
        # In a request, a nested resource is one of the stored types, closed like the rest.
        node["$ref"] = f"{REF}StoredResourceInput"
    elif isinstance(ref, str) and ref.startswith(REF):
        node["$ref"] = f"{ref}Input"
    # Only object schemas of models: the "properties" inside not/anyOf (choice rules) only
    # name the properties they require.
    if "properties" in node and node.get("type") == "object":
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
        if name in seen or name == "Resource":
            continue
        seen.append(name)
        todo.extend(_refs(defs[name]))
    return sorted(seen)


def _parameters_input(title: str, description: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """A Parameters body with exactly these parts, in this order."""
    return {
        "type": "object",
        "title": title,
        "description": description,
        "properties": {
            "resourceType": {"const": "Parameters", "type": "string"},
            "parameter": {
                "type": "array",
                "prefixItems": parts,
                "minItems": len(parts),
                # maxItems = the parts listed: nothing beyond prefixItems (no boolean
                # schema "items: false", which some generators cannot read).
                "maxItems": len(parts),
            },
        },
        "required": ["resourceType", "parameter"],
        "additionalProperties": False,
    }


def _part(name: str, value_key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": name, "type": "string"}, value_key: value},
        "required": ["name", value_key],
        "additionalProperties": False,
    }


PATIENT_REFERENCE = r"^Patient/[A-Za-z0-9\-.]{1,64}$"


def _operation_inputs() -> dict[str, dict[str, Any]]:
    subject = _part(
        "subject",
        "valueReference",
        {
            "type": "object",
            "properties": {"reference": {"type": "string", "pattern": PATIENT_REFERENCE}},
            "required": ["reference"],
            "additionalProperties": False,
        },
    )
    url = _part("url", "valueCanonical", {"type": "string", "pattern": base.URI_PATTERN})
    return {
        "ApplyParametersInput": _parameters_input(
            "ApplyParametersInput",
            "$apply on one PlanDefinition: the patient (subject) to apply it to.",
            [subject],
        ),
        "ApplyByUrlParametersInput": _parameters_input(
            "ApplyByUrlParametersInput",
            "$apply at the type level: the patient and the PlanDefinition's canonical "
            "url[|version].",
            [subject, url],
        ),
        "SubmitSessionParametersInput": _parameters_input(
            "SubmitSessionParametersInput",
            "$submit-session as Parameters: the session Bundle in a part named 'session'.",
            [_part("session", "resource", {"$ref": f"{REF}SessionBundleInput"})],
        ),
        "EvaluateParametersInput": _parameters_input(
            "EvaluateParametersInput",
            "$evaluate: the moment to evaluate at (default: now).",
            [_part("at", "valueDateTime", {"type": "string", "pattern": base.INSTANT_PATTERN})],
        ),
    }


def _transaction_input() -> dict[str, dict[str, Any]]:
    resources = sorted(STORED_TYPES)
    return {
        "StoredResourceInput": {
            "title": "StoredResourceInput",
            "description": "A resource of one of the types this service stores.",
            "oneOf": [{"$ref": f"{REF}{t}Input"} for t in resources],
            "discriminator": {
                "propertyName": "resourceType",
                "mapping": {t: f"{REF}{t}Input" for t in resources},
            },
        },
        "TransactionEntryInput": {
            "type": "object",
            "title": "TransactionEntryInput",
            "description": "One batch/transaction entry: a request and, for POST and PUT, the "
            "resource. fullUrl urn:uuid:... values are replaced by the assigned ids in every "
            "reference of a transaction.",
            "properties": {
                "fullUrl": {"type": "string", "pattern": base.URI_PATTERN},
                "resource": {"$ref": f"{REF}StoredResourceInput"},
                "request": {"$ref": f"{REF}TransactionEntryRequestInput"},
            },
            "required": ["request"],
            # POST and PUT carry the resource they write (the server answers 400 without it).
            "if": {
                "properties": {"request": {"properties": {"method": {"enum": ["POST", "PUT"]}}}}
            },
            "then": {
                "properties": {"resource": {"$ref": f"{REF}StoredResourceInput"}},
                "required": ["resource"],
            },
            "additionalProperties": False,
        },
        "SessionBundleInput": {
            "type": "object",
            "title": "SessionBundleInput",
            "description": "A session as a collection Bundle: the session panel Observation "
            "(code flexion-session, hasMember the repetitions) and one Observation per "
            "repetition, linked by urn:uuid fullUrls, without ids.",
            "properties": {
                "resourceType": {"const": "Bundle", "type": "string"},
                "type": {"const": "collection", "type": "string"},
                "entry": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "fullUrl": {"type": "string", "pattern": "^urn:uuid:[0-9a-f-]{36}$"},
                            "resource": {"$ref": f"{REF}ObservationInput"},
                        },
                        "required": ["fullUrl", "resource"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["resourceType", "type", "entry"],
            "additionalProperties": False,
        },
        "TransactionBundleInput": {
            "type": "object",
            "title": "TransactionBundleInput",
            "description": "A transaction: all entries run in one database transaction, all "
            "succeed or none (one error answers the whole Bundle).",
            "properties": {
                "resourceType": {"const": "Bundle", "type": "string"},
                "type": {"const": "transaction", "type": "string"},
                "entry": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": f"{REF}TransactionEntryInput"},
                },
            },
            "required": ["resourceType", "type"],
            "additionalProperties": False,
        },
        "BatchBundleInput": {
            "type": "object",
            "title": "BatchBundleInput",
            "description": "A batch: entries run one by one. Each entry (shaped like a "
            "TransactionEntryInput) is checked on its own, and a bad entry is answered in "
            "its batch-response entry (response.status, response.outcome), not with an "
            "error for the whole Bundle.",
            "properties": {
                "resourceType": {"const": "Bundle", "type": "string"},
                "type": {"const": "batch", "type": "string"},
                "entry": {"type": "array", "minItems": 1, "items": {"type": "object"}},
            },
            "required": ["resourceType", "type"],
            "additionalProperties": False,
        },
        "BatchOrTransactionInput": {
            "title": "BatchOrTransactionInput",
            "oneOf": [{"$ref": f"{REF}BatchBundleInput"}, {"$ref": f"{REF}TransactionBundleInput"}],
            "discriminator": {
                "propertyName": "type",
                "mapping": {
                    "batch": f"{REF}BatchBundleInput",
                    "transaction": f"{REF}TransactionBundleInput",
                },
            },
        },
        **_operation_inputs(),
    }


def _searchset(resource_type: str, includes: bool) -> dict[str, Any]:
    resource: dict[str, Any] = {"$ref": f"{REF}{resource_type}"}
    if includes:
        # _include and _revinclude add resources (search.mode = include) of other types.
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
    from service.fhir.search_params import INCLUDES, revinclude_sources

    defs = _definitions()
    components: dict[str, dict[str, Any]] = {}
    for name, schema in defs.items():
        response = _walk(copy.deepcopy(schema), _open)
        props = response.get("properties", {})
        if "resourceType" in props and (name in STORED_TYPES or name in READ_ONLY_TYPES):
            # A subsetted read (_summary, _elements) may leave out mandatory elements.
            response["required"] = ["resourceType"]
            response.pop("anyOf", None)  # e.g. GuidanceResponse.module[x]
        components[name] = response
    for name in _input_names(defs):
        closed = _walk(copy.deepcopy(defs[name]), _closed)
        closed["title"] = input_name(name)
        components[input_name(name)] = closed
    _typed_references(components)
    components.update(_transaction_input())
    for resource_type in [*STORED_TYPES, *READ_ONLY_TYPES]:
        components[searchset_name(resource_type)] = _searchset(
            resource_type,
            bool(INCLUDES.get(resource_type) or revinclude_sources(resource_type)),
        )
    return dict(sorted(components.items()))


def _unwrap(annotation: Any) -> Any:
    import types
    import typing

    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        elif origin is typing.Annotated or origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation


def _reference_pattern(targets: frozenset[str]) -> str:
    """What the server accepts in a Reference.reference that may point at ``targets``:
    Type/id (relative or absolute, optionally /_history/v) of an allowed type, or a value
    without a slash (#contained, urn:uuid:..., an opaque id); [|version] may follow."""
    names = "|".join(sorted(targets))
    rid = r"[A-Za-z0-9\-.]{1,64}"
    allowed = rf"(?:https?://[^|{base.PY_WS}]+/)?(?:{names})/{rid}(?:/_history/{rid})?"
    opaque = rf"[^/|]*[^{base.PY_WS}/|][^/|]*"
    return rf"^(?:{allowed}|{opaque})(?:\|[^/]*)?$"


def _typed_references(components: dict[str, dict[str, Any]]) -> None:
    """Input references of elements whose R4 type profile limits the target types."""
    from service.fhir.structure import _fields

    seen: set[tuple[str, str]] = set()
    todo: list[tuple[type[BaseModel], str]] = [(m, n) for n, m in STORED_TYPES.items()]
    while todo:
        model, fhir_class = todo.pop()
        if (model.__name__, fhir_class) in seen:
            continue
        seen.add((model.__name__, fhir_class))
        specs = _fields(fhir_class).specs
        component = components.get(input_name(model.__name__), {})
        for name, info in model.model_fields.items():
            key = info.alias or name
            spec = specs.get(key)
            target = _unwrap(info.annotation)
            if spec is None or not (isinstance(target, type) and issubclass(target, BaseModel)):
                continue
            if target is base.Reference and spec.targets and key in component.get("properties", {}):
                ref_name = f"{fhir_class}{key[0].upper()}{key[1:]}ReferenceInput"
                if ref_name not in components:
                    schema = copy.deepcopy(components["ReferenceInput"])
                    schema["title"] = ref_name
                    schema["description"] = "A Reference to " + " or ".join(sorted(spec.targets))
                    schema["properties"]["reference"] = {
                        "type": "string",
                        "pattern": _reference_pattern(spec.targets),
                    }
                    components[ref_name] = schema
                prop = component["properties"][key]
                holder = prop.get("items", prop)
                holder["$ref"] = REF + ref_name
            elif spec.element and target is not base.Reference:
                element = "Extension" if issubclass(target, base.ExtensionValue) else spec.element
                todo.append((target, element))


def component_schemas() -> dict[str, dict[str, Any]]:
    """Every schema the OpenAPI document references, by component name (a fresh copy)."""
    return copy.deepcopy(_components())
