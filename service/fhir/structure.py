"""R4 validation of raw JSON, driven by the fhir.resources R4B models' own field metadata.

The walker checks what the models check: known elements, cardinality, required elements,
one value per choice group, and every primitive against the model's own validator for that
primitive (regex, calendar, range), called directly through a pydantic TypeAdapter. It also
checks what the models leave out: they coerce ``"true"`` to a boolean and ``"1.5"`` to a
decimal, accept nulls, ``{}``, ``[]`` and ``""``, and do not enforce required code bindings.
Building the models instead (about 70 model objects per session Bundle, each running Python
validators) took seven times as long (bench/README.md).
tests/fhir/test_validation_agrees_with_models.py holds the walk to the models' verdict on the
official R4 examples and on mutations.
"""

import dataclasses
import re
import typing
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import TypeAdapter, ValidationError

from service.fhir.dates import parse_range
from service.fhir.errors import Issue
from service.fhir.indexing import parse_reference
from service.fhir.narrative import narrative_problems

_PRIMITIVE_KINDS = {bool: "boolean", int: "integer", Decimal: "decimal"}

# fhir.resources truncates value sets written "a | b | c +" in the spec to [..., "+"]; these are
# the complete R4 value sets. A truncated list without an entry here is not checked at all.
_OBSERVATION_STATUS = (
    "registered preliminary final amended corrected cancelled entered-in-error unknown"
)
_COMPLETED_BINDINGS: dict[tuple[str, ...], str] = {
    ("registered", "preliminary", "final", "amended", "+"): _OBSERVATION_STATUS,
    ("registered", "partial", "preliminary", "final", "+"): (
        "registered partial preliminary final amended corrected appended cancelled "
        "entered-in-error unknown"
    ),
    ("planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "+"): (
        "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown"
    ),
    ("group", "display", "boolean", "decimal", "integer", "date", "dateTime", "+"): (
        "group display question boolean decimal integer date dateTime time string text url "
        "choice open-choice attachment reference quantity"
    ),
    ("draft", "requested", "received", "accepted", "+"): (
        "draft requested received accepted rejected ready cancelled in-progress on-hold failed "
        "completed entered-in-error"
    ),
    ("draft", "active", "suspended", "+"): (
        "draft active suspended cancelled completed entered-in-error unknown"
    ),
    ("active", "completed", "entered-in-error", "+"): (
        "active completed entered-in-error intended stopped on-hold"
    ),
    ("barcode", "rfid", "manual", "+"): "barcode rfid manual card self-reported unknown",
}


def _binding(values: list[str] | None) -> frozenset[str] | None:
    if not values:
        return None
    if any(" " in v or v.endswith(".") for v in values):
        return None  # "etc." marks an extensible binding: other codes are allowed
    if "+" not in values:
        return frozenset(values)
    completed = _COMPLETED_BINDINGS.get(tuple(values))
    return frozenset(completed.split()) if completed else None


_IGNORED_FIELDS = {"fhir_comments"}

# Required bindings whose codes fhir.resources does not carry in its field metadata (found by
# tests/openapi/test_schemas.py): without this entry any comparator string was accepted.
_QUANTITY_COMPARATOR = frozenset({"<", "<=", ">=", ">"})
_MISSING_BINDINGS: dict[tuple[str, str], frozenset[str]] = {
    **{
        (name, "comparator"): _QUANTITY_COMPARATOR
        for name in ("Quantity", "Age", "Count", "Distance", "Duration", "MoneyQuantity")
    },
    ("AuditEvent", "action"): frozenset({"C", "R", "U", "D", "E"}),
    ("AuditEvent", "outcome"): frozenset({"0", "4", "8", "12"}),
    ("AuditEventAgentNetwork", "type"): frozenset({"1", "2", "3", "4", "5"}),
}


# R4 primitives whose regex forbids whitespace anywhere (uri family and ids).
_NO_WHITESPACE = frozenset({"Uri", "Url", "Canonical", "Oid", "Uuid", "Id"})
_WHITESPACE = re.compile(r"\s")
# Primitives with a time zone: at the first and last day of the calendar, the offset can move
# them out of the years a datetime (and the search index) holds; and the R4 regex allows a
# leap second (ss = 60), which no datetime holds. The service reads these times (indexes,
# decisions), so it refuses both.
_ZONED = frozenset({"DateTime", "Instant"})
_EDGE_YEARS = ("0001", "9999")
_LEAP_SECOND = slice(17, 19)  # YYYY-MM-DDThh:mm:ss


@dataclass(frozen=True)
class FieldSpec:
    kind: str  # boolean | integer | decimal | string | element | resource | primitive-ext
    is_list: bool
    element: str | None = None  # model class name for kind == element
    codes: frozenset[str] | None = None  # required binding
    targets: frozenset[str] | None = None  # Reference: the resource types it may point at
    primitive: str | None = None  # the FHIR primitive of a string ("Uri", "Code", "Id", ...)
    # The model's own validator for the primitive (it checks the value's lexical form).
    validator: TypeAdapter[Any] | None = dataclasses.field(default=None, compare=False)


def _unwrap_primitive(annotation: Any) -> tuple[Any, bool, str | None, Any]:
    """The base type, whether it is a list, the FHIR primitive it is annotated with, and the
    annotated type itself (None for elements)."""
    is_list, primitive, annotated = False, None, None
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            non_none = [a for a in args if a is not type(None)]
            annotation = non_none[0]
        elif origin in (list, typing.List):  # noqa: UP006 - fhir.resources uses typing.List
            is_list = True
            annotation = args[0]
        elif origin is typing.Annotated:
            annotated = annotation
            annotation = args[0]
            primitive = type(args[-1]).__name__
        else:
            return annotation, is_list, primitive, annotated


def _spec(annotation: Any, extra: dict[str, Any] | None) -> FieldSpec:
    base, is_list, primitive, annotated = _unwrap_primitive(annotation)
    codes = _binding(extra.get("enum_values")) if extra else None
    if base is bool:
        return FieldSpec("boolean", is_list, codes=codes)
    if base in _PRIMITIVE_KINDS:
        kind = _PRIMITIVE_KINDS[base]
        validator = _primitive_validator(annotated)
        return FieldSpec(kind, is_list, codes=codes, primitive=primitive, validator=validator)
    name = getattr(base, "__name__", "")
    if name == "ResourceType":
        return FieldSpec("resource", is_list)
    if name == "FHIRPrimitiveExtensionType":
        return FieldSpec("primitive-ext", is_list)
    if name.endswith("Type") and getattr(base, "__module__", "") == "abc":
        element = name[: -len("Type")]
        targets = extra.get("enum_reference_types") if extra and element == "Reference" else None
        if not targets or "Resource" in targets:
            targets = None
        return FieldSpec(
            "element", is_list, element=element, targets=frozenset(targets) if targets else None
        )
    validator = _primitive_validator(annotated)
    return FieldSpec("string", is_list, codes=codes, primitive=primitive, validator=validator)


@cache
def _primitive_validator(annotated: Any) -> TypeAdapter[Any] | None:
    return None if annotated is None else TypeAdapter(annotated)


def _primitive_problem(spec: FieldSpec, item: Any) -> str | None:
    """Why the model's own validator for this primitive refuses ``item``, if it does."""
    if spec.validator is None:
        return None
    try:
        spec.validator.validate_python(item)
    except ValidationError as exc:
        name = (spec.primitive or "value").lower()
        # pydantic frames a validator's own ValueError as "Value error, <its message>".
        message = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        return f"Not a valid {name}: {message}"
    if spec.primitive in _ZONED and (item[:4] in _EDGE_YEARS or item[_LEAP_SECOND] == "60"):
        try:
            parse_range(item)
        except ValueError as exc:
            return str(exc)
    return None


@dataclass(frozen=True)
class ModelFields:
    """What the walk needs of one model class, read once from its field metadata."""

    specs: dict[str, FieldSpec]  # by JSON name
    required: frozenset[str]  # JSON names that must be present
    choice: dict[str, str]  # choice group (value[x] -> "value") by JSON name
    required_choices: frozenset[str]  # choice groups of which one member must be present


@cache
def _fields(class_name: str) -> ModelFields:
    model = get_fhir_model_class(class_name)
    specs: dict[str, FieldSpec] = {}
    required: set[str] = set()
    choice: dict[str, str] = {}
    required_choices: set[str] = set()
    for name, info in model.model_fields.items():
        if name in _IGNORED_FIELDS:
            continue
        json_name = info.alias or name
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else None
        specs[json_name] = _spec(info.annotation, extra)
        # Required primitives carry element_required (their _name extension can stand in for
        # the value); required elements of other types are pydantic-required fields.
        if info.is_required() or (extra and extra.get("element_required")):
            required.add(json_name)
        if extra and extra.get("one_of_many"):
            choice[json_name] = str(extra["one_of_many"])
            if extra.get("one_of_many_required"):
                required_choices.add(str(extra["one_of_many"]))
    for (owner, element), codes in _MISSING_BINDINGS.items():
        if owner == class_name and element in specs and specs[element].codes is None:
            specs[element] = dataclasses.replace(specs[element], codes=codes)
    return ModelFields(specs, frozenset(required), choice, frozenset(required_choices))


def _is_known_type(name: str) -> bool:
    try:
        get_fhir_model_class(name)
    except (KeyError, ValueError):
        return False
    return True


def check_resource(resource: Any, path: str = "") -> list[Issue]:
    """Check one resource (and everything it contains); an empty list means structurally fine."""
    issues: list[Issue] = []
    if not isinstance(resource, dict):
        return [Issue("structure", "A resource must be a JSON object", expression=(path or "$",))]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not _is_known_type(resource_type):
        return [
            Issue(
                "structure",
                f"Unknown resourceType {resource_type!r}",
                expression=(f"{path}.resourceType" if path else "resourceType",),
            )
        ]
    _check_element(resource_type, resource, path or resource_type, issues, is_resource=True)
    return issues


def _check_element(
    class_name: str, value: dict[str, Any], path: str, issues: list[Issue], is_resource: bool
) -> None:
    fields = _fields(class_name)
    specs, choice = fields.specs, fields.choice
    if not value and not is_resource:
        issues.append(Issue("structure", "Empty objects are not allowed", expression=(path,)))
    seen_choice: dict[str, str] = {}
    for key, item in value.items():
        if key == "resourceType" and is_resource:
            continue
        where = f"{path}.{key}"
        spec = specs.get(key)
        if spec is None:
            issues.append(Issue("structure", f"Unknown element {key!r}", expression=(where,)))
            continue
        group = choice.get(key)
        if group is not None:
            if group in seen_choice:
                issues.append(
                    Issue(
                        "structure",
                        f"Only one of {group}[x] is allowed ({seen_choice[group]}, {key})",
                        expression=(where,),
                    )
                )
            seen_choice[group] = key
        _check_value(spec, item, where, issues)
    _check_invariants(class_name, value, path, issues, is_resource)
    for key in fields.required:
        if key not in value and f"_{key}" not in value:
            issues.append(
                Issue(
                    "required", f"Missing required element {key!r}", expression=(f"{path}.{key}",)
                )
            )
    for group in fields.required_choices - seen_choice.keys():
        issues.append(
            Issue(
                "required", f"Missing required element {group}[x]", expression=(f"{path}.{group}",)
            )
        )


def _has_value(element: dict[str, Any]) -> bool:
    return any(key.startswith("value") and key[5:6].isupper() for key in element)


def _check_invariants(
    class_name: str, value: dict[str, Any], path: str, issues: list[Issue], is_resource: bool
) -> None:
    """The R4 invariants the models do not check (ext-1, obs-6, txt-1, txt-2)."""
    if class_name == "Extension" and ("extension" in value) == _has_value(value):
        issues.append(
            Issue(
                "invariant",
                "ext-1: an extension has either nested extensions or a value[x], not both",
                expression=(path,),
            )
        )
    if class_name == "Narrative" and isinstance(value.get("div"), str) and value["div"].strip():
        for problem in narrative_problems(value["div"]):
            issues.append(Issue("invariant", problem, expression=(f"{path}.div",)))
    absent = class_name == "Observation" and is_resource and "dataAbsentReason" in value
    if absent and _has_value(value):
        issues.append(
            Issue(
                "invariant",
                "obs-6: dataAbsentReason is only allowed when there is no value[x]",
                expression=(f"{path}.dataAbsentReason",),
            )
        )


def _check_value(spec: FieldSpec, item: Any, where: str, issues: list[Issue]) -> None:
    if spec.is_list:
        if not isinstance(item, list):
            issues.append(Issue("structure", "Expected a JSON array", expression=(where,)))
            return
        if not item:
            issues.append(Issue("structure", "Empty arrays are not allowed", expression=(where,)))
        for index, element in enumerate(item):
            # Primitive extension arrays may hold null to line up with their value array.
            if element is None and spec.kind == "primitive-ext":
                continue
            _check_single(spec, element, f"{where}[{index}]", issues)
        return
    if isinstance(item, list):
        issues.append(
            Issue("structure", "Expected a single value, not an array", expression=(where,))
        )
        return
    _check_single(spec, item, where, issues)


def _check_single(spec: FieldSpec, item: Any, where: str, issues: list[Issue]) -> None:
    kind = spec.kind
    if item is None:
        issues.append(Issue("structure", "null is not allowed", expression=(where,)))
    elif kind == "boolean":
        if not isinstance(item, bool):
            issues.append(Issue("structure", "Expected a JSON boolean", expression=(where,)))
    elif kind == "integer":
        if isinstance(item, bool) or not isinstance(item, int):
            issues.append(Issue("structure", "Expected a JSON integer", expression=(where,)))
        elif problem := _primitive_problem(spec, item):
            issues.append(Issue("invalid", problem, expression=(where,)))
    elif kind == "decimal":
        if isinstance(item, bool) or not isinstance(item, int | float):
            issues.append(Issue("structure", "Expected a JSON number", expression=(where,)))
        elif problem := _primitive_problem(spec, item):
            issues.append(Issue("invalid", problem, expression=(where,)))
    elif kind == "string":
        if not isinstance(item, str):
            issues.append(Issue("structure", "Expected a JSON string", expression=(where,)))
        elif not item.strip():
            issues.append(Issue("structure", "Empty strings are not allowed", expression=(where,)))
        elif spec.primitive in _NO_WHITESPACE and _WHITESPACE.search(item):
            issues.append(
                Issue(
                    "value",
                    f"A {spec.primitive.lower()} cannot contain whitespace",
                    expression=(where,),
                )
            )
        elif spec.codes is not None and item not in spec.codes:
            allowed = ", ".join(sorted(spec.codes))
            issues.append(
                Issue("code-invalid", f"{item!r} is not one of: {allowed}", expression=(where,))
            )
        elif problem := _primitive_problem(spec, item):
            issues.append(Issue("invalid", problem, expression=(where,)))
    elif kind == "resource":
        issues.extend(check_resource(item, where))
    elif kind in ("element", "primitive-ext"):
        if not isinstance(item, dict):
            issues.append(Issue("structure", "Expected a JSON object", expression=(where,)))
        else:
            name = spec.element if kind == "element" else "FHIRPrimitiveExtension"
            _check_element(name or "Element", item, where, issues, is_resource=False)
            if spec.targets is not None:
                _check_reference_target(spec.targets, item, where, issues)


def _check_reference_target(
    targets: frozenset[str], item: dict[str, Any], where: str, issues: list[Issue]
) -> None:
    """A literal reference names its target: [base/]Type/id[/_history/v] of a type the element
    allows (R4 type profile), or a value without a slash (#contained, urn:uuid:...)."""
    reference = item.get("reference")
    if not isinstance(reference, str):
        return
    head = reference.partition("|")[0]
    target_type, _ = parse_reference(head)
    problem = None
    if not head.strip():
        problem = "A reference must name what it points at"
    elif target_type is not None and target_type not in targets:
        problem = f"A reference to {target_type} is not allowed here; allowed: " + ", ".join(
            sorted(targets)
        )
    elif target_type is None and "/" in head:
        problem = "A reference with a slash must be [base/]Type/id[/_history/version]"
    if problem:
        issues.append(Issue("structure", problem, expression=(f"{where}.reference",)))
