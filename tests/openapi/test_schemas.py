"""The slim models stay honest: every element they name exists in R4 where they say, the
required elements and code bindings are the ones the server enforces, and examples validate.
"""

import json
import types
import typing
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from service.api.openapi import READ_ONLY_TYPES, STORED_TYPES, component_schemas
from service.api.openapi import examples as schema_examples
from service.api.openapi.base import ExtensionValue
from service.fhir.structure import _fields
from service.fhir.validate import validate_resource
from tests.openapi import make_examples


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        elif origin is typing.Annotated or origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation


def _walk(model: type[BaseModel], fhir_class: str, path: str, seen: set[str]) -> list[str]:
    """Problems of one slim model against the R4 class the server validates it as."""
    if (model.__name__, fhir_class) in seen:
        return []
    seen.add((model.__name__, fhir_class))  # type: ignore[arg-type]
    fields = _fields(fhir_class)
    specs, required = fields.specs, fields.required
    problems = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        where = f"{path}.{key}"
        if key == "resourceType":
            continue
        spec = specs.get(key)
        if spec is None:
            problems.append(f"{where}: no such element in {fhir_class}")
            continue
        target = _unwrap(info.annotation)
        if typing.get_origin(target) is Literal:
            codes = set(typing.get_args(target))
            if spec.codes is None:
                problems.append(f"{where}: enum {sorted(codes)} but the server checks no binding")
            elif codes != set(spec.codes):
                problems.append(f"{where}: enum {sorted(codes)} != server {sorted(spec.codes)}")
        if isinstance(target, type) and issubclass(target, BaseModel):
            element = "Extension" if issubclass(target, ExtensionValue) else spec.element
            if element:
                problems += _walk(target, element, where, seen)
    fhir_required = set(required)
    from fhir.resources.R4B import get_fhir_model_class

    fhir_required |= {
        (f.alias or n)
        for n, f in get_fhir_model_class(fhir_class).model_fields.items()
        if f.is_required()
    }
    slim_required = {(f.alias or n) for n, f in model.model_fields.items() if f.is_required()}
    for key in sorted(fhir_required - slim_required):
        if key in {(f.alias or n) for n, f in model.model_fields.items()}:
            problems.append(f"{path}.{key}: required in R4 but optional in the slim model")
        else:
            problems.append(f"{path}.{key}: required in R4 but missing from the slim model")
    return problems


@pytest.mark.parametrize("resource_type", sorted({**STORED_TYPES, **READ_ONLY_TYPES}))
def test_slim_model_matches_r4(resource_type: str) -> None:
    model = {**STORED_TYPES, **READ_ONLY_TYPES}[resource_type]
    problems = _walk(model, resource_type, resource_type, set())
    assert not problems, "\n".join(problems)


def test_no_null_in_components() -> None:
    text = json.dumps(component_schemas())
    assert '"null"' not in text and ": null" not in text


def test_examples_are_current() -> None:
    committed = json.loads(make_examples.TARGET.read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(make_examples.build())), (
        "service/api/openapi/examples.json is out of date: python -m tests.openapi.make_examples"
    )


@pytest.mark.parametrize("name", ["Patient", "Observation", "ObservationRepetition", "CarePlan"])
def test_request_examples_validate(name: str) -> None:
    import jsonschema

    value = schema_examples.example(name)["value"]
    validate_resource(value)
    components = component_schemas()
    schema = {"$ref": f"#/components/schemas/{value['resourceType']}Input"}
    document = {"components": {"schemas": components}, **schema}
    jsonschema.Draft202012Validator(document).validate(value)
