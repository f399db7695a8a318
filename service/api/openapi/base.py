"""FHIR R4 primitives and the data types the slim resource models use.

Each pydantic model here describes the elements the service reads and checks; the OpenAPI
document derives two schemas from every model (see ``service.api.openapi.components``):

- ``<Name>``: what the server returns. Other valid R4 elements may appear (a stored official
  example carries elements beyond the slim model), so these are open objects.
- ``<Name>Input``: what a request body may contain, closed with ``additionalProperties: false``.

Rules the server enforces and the schemas therefore state (service/fhir/structure.py):
no ``null``, no empty string / object / array, the R4 regular expressions of the primitive
types, required elements and required code bindings, and at most one variant of a choice
element ``value[x]`` (see :func:`one_of`).

Primitive patterns are the R4 regular expressions with one narrowing where the server reads
more than a regex can say: dates. A pattern cannot know the calendar, so ``date`` and
``dateTime`` patterns allow days 01-28 in February, 01-30 or 01-31 by month; the 29th of
February is accepted by the server in leap years although the pattern leaves it out.
"""

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

T = TypeVar("T")
# FHIR arrays are never empty (the server rejects []).
List = Annotated[list[T], Field(min_length=1)]
# ``x: T | Skip = None`` is an optional element that never appears as null in the schema.
Skip = SkipJsonSchema[None]

_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_YEAR = r"(?:[0-9](?:[0-9](?:[0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
_ZONE = r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_PARTIAL = rf"{_YEAR}(?:-(?:0[1-9]|1[0-2]))?"

# White space as the server sees it: the R4B code validators check patterns with Rust's regex
# (\s = Unicode White_Space); the structure check refuses values that Python's str.strip()
# empties (which also strips \x1c-\x1f). Written out, so every regex engine agrees.
_RUST_WS = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
PY_WS = _PY_WS = _RUST_WS + r"\x1c-\x1f"
_TOKEN = f"[^{_RUST_WS}]"
_VISIBLE = f"[^{_PY_WS}]"

ID_PATTERN = r"^[A-Za-z0-9\-.]{1,64}$"
# R4 code: tokens separated by single white space (^[^\s]+(\s[^\s]+)*$), not blank.
CODE_PATTERN = (
    rf"^(?:{_TOKEN}+[{_RUST_WS}])*{_TOKEN}*{_VISIBLE}{_TOKEN}*(?:[{_RUST_WS}]{_TOKEN}+)*$"
)
# Strings (and markdown: the server checks no more for them) are not blank.
STRING_PATTERN = rf"^[\s\S]*{_VISIBLE}[\s\S]*$"
# uri, url, canonical (R4 regex \S*): no white space at all, and not blank.
URI_PATTERN = rf"^{_VISIBLE}+$"
DATE_PATTERN = rf"^(?:{_YEAR}-{_MONTH_DAY}|{_PARTIAL})$"
DATETIME_PATTERN = rf"^(?:{_YEAR}-{_MONTH_DAY}(?:T{_TIME}{_ZONE})?|{_PARTIAL})$"
INSTANT_PATTERN = rf"^{_YEAR}-{_MONTH_DAY}T{_TIME}{_ZONE}$"

FhirId = Annotated[str, Field(pattern=ID_PATTERN, description="FHIR id")]
Code = Annotated[str, Field(pattern=CODE_PATTERN)]
Uri = Annotated[str, Field(pattern=URI_PATTERN)]
Canonical = Annotated[str, Field(pattern=URI_PATTERN, description="canonical URL[|version]")]
String = Annotated[str, Field(pattern=STRING_PATTERN)]
Markdown = String
Date = Annotated[str, Field(pattern=DATE_PATTERN, description="FHIR date: YYYY, YYYY-MM or date")]
DateTime = Annotated[
    str,
    Field(
        pattern=DATETIME_PATTERN,
        description="FHIR dateTime: YYYY, YYYY-MM, YYYY-MM-DD or a full time with zone",
    ),
]
Instant = Annotated[
    str, Field(pattern=INSTANT_PATTERN, description="FHIR instant: full time with zone")
]
Integer = Annotated[int, Field(ge=-2_147_483_648, le=2_147_483_647)]
PositiveInt = Annotated[int, Field(ge=1, le=2_147_483_647)]
UnsignedInt = Annotated[int, Field(ge=0, le=2_147_483_647)]
Decimal = float


def one_of(*groups: tuple[str, ...]) -> dict[str, Any]:
    """json_schema_extra for choice elements: at most one variant of each ``x[x]`` group."""
    # "properties" repeats the names so linters see each required property defined.
    pairs = [
        {"properties": {a: {}, b: {}}, "required": [a, b]}
        for group in groups
        for i, a in enumerate(group)
        for b in group[i + 1 :]
    ]
    if not pairs:
        return {}
    return {"not": pairs[0] if len(pairs) == 1 else {"anyOf": pairs}}


def one_required(*names: str) -> dict[str, Any]:
    """json_schema_extra: one of these choice variants must be present (e.g. module[x])."""
    return {"anyOf": [{"properties": {n: {}}, "required": [n]} for n in names]}


class Element(BaseModel):
    """Base of every FHIR element (the OpenAPI schemas add minProperties: 1, FHIR ele-1)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")


class Coding(Element):
    system: Uri | Skip = None
    version: String | Skip = None
    code: Code | Skip = None
    display: String | Skip = None
    userSelected: bool | Skip = None


class CodeableConcept(Element):
    coding: List[Coding] | Skip = None
    text: String | Skip = None


class Period(Element):
    start: DateTime | Skip = None
    end: DateTime | Skip = None


class Identifier(Element):
    use: Literal["usual", "official", "temp", "secondary", "old"] | Skip = None
    type: CodeableConcept | Skip = None
    system: Uri | Skip = None
    value: String | Skip = None
    period: Period | Skip = None


class Reference(Element):
    reference: String | Skip = Field(
        None, description="Type/id, an absolute URL, urn:uuid:..., or #contained-id"
    )
    type: Uri | Skip = None
    identifier: Identifier | Skip = None
    display: String | Skip = None


class Quantity(Element):
    value: Decimal | Skip = None
    comparator: Literal["<", "<=", ">=", ">"] | Skip = None
    unit: String | Skip = None
    system: Uri | Skip = None
    code: Code | Skip = None


class SimpleQuantity(Element):
    value: Decimal | Skip = None
    unit: String | Skip = None
    system: Uri | Skip = None
    code: Code | Skip = None


class Range(Element):
    low: SimpleQuantity | Skip = None
    high: SimpleQuantity | Skip = None


class Annotation(Element):
    authorString: String | Skip = None
    time: DateTime | Skip = None
    text: Markdown


class Meta(Element):
    versionId: FhirId | Skip = None
    lastUpdated: Instant | Skip = None
    source: Uri | Skip = None
    profile: List[Canonical] | Skip = None
    security: List[Coding] | Skip = None
    tag: List[Coding] | Skip = None


_EXT_VALUES = (
    "valueBoolean",
    "valueInteger",
    "valueDecimal",
    "valueString",
    "valueCode",
    "valueCanonical",
    "valueDateTime",
    "valueCodeableConcept",
    "valueQuantity",
    "valueRange",
    "valueReference",
)


class ExtensionValue(Element):
    """An extension leaf: a url and exactly one value[x] (ext-1: it has no nested ones)."""

    model_config = ConfigDict(json_schema_extra=one_of(_EXT_VALUES) | one_required(*_EXT_VALUES))

    url: Uri
    valueBoolean: bool | Skip = None
    valueInteger: Integer | Skip = None
    valueDecimal: Decimal | Skip = None
    valueString: String | Skip = None
    valueCode: Code | Skip = None
    valueCanonical: Canonical | Skip = None
    valueDateTime: DateTime | Skip = None
    valueCodeableConcept: CodeableConcept | Skip = None
    valueQuantity: Quantity | Skip = None
    valueRange: Range | Skip = None
    valueReference: Reference | Skip = None


class Extension(ExtensionValue):
    """An extension: a url with one value[x], or nested extensions (one level here).

    FHIR ext-1: either extensions or a value[x], not both (the service checks it).
    """

    model_config = ConfigDict(
        json_schema_extra=one_of(_EXT_VALUES)
        | {"oneOf": [{"required": ["extension"]}, one_required(*_EXT_VALUES)]}
    )

    extension: List[ExtensionValue] | Skip = None


class Duration(Element):
    value: Decimal | Skip = None
    comparator: Literal["<", "<=", ">=", ">"] | Skip = None
    unit: String | Skip = None
    system: Uri | Skip = None
    code: Code | Skip = None


UnitsOfTime = Literal["s", "min", "h", "d", "wk", "mo", "a"]


class TimingRepeat(Element):
    count: PositiveInt | Skip = None
    duration: Decimal | Skip = None
    durationUnit: UnitsOfTime | Skip = None
    frequency: PositiveInt | Skip = None
    frequencyMax: PositiveInt | Skip = None
    period: Decimal | Skip = None
    periodMax: Decimal | Skip = None
    periodUnit: UnitsOfTime | Skip = None
    boundsPeriod: Period | Skip = None


class Timing(Element):
    event: List[DateTime] | Skip = None
    repeat: TimingRepeat | Skip = None
    code: CodeableConcept | Skip = None


class HumanName(Element):
    use: Literal["usual", "official", "temp", "nickname", "anonymous", "old", "maiden"] | Skip = (
        None
    )
    text: String | Skip = None
    family: String | Skip = None
    given: List[String] | Skip = None
    prefix: List[String] | Skip = None
    suffix: List[String] | Skip = None
    period: Period | Skip = None


class ContactPoint(Element):
    system: Literal["phone", "fax", "email", "pager", "url", "sms", "other"] | Skip = None
    value: String | Skip = None
    use: Literal["home", "work", "temp", "old", "mobile"] | Skip = None
    rank: PositiveInt | Skip = None


class Address(Element):
    use: Literal["home", "work", "temp", "old", "billing"] | Skip = None
    type: Literal["postal", "physical", "both"] | Skip = None
    text: String | Skip = None
    line: List[String] | Skip = None
    city: String | Skip = None
    postalCode: String | Skip = None
    country: String | Skip = None


class RelatedArtifact(Element):
    type: Literal[
        "documentation",
        "justification",
        "citation",
        "predecessor",
        "successor",
        "derived-from",
        "depends-on",
        "composed-of",
    ]
    label: String | Skip = None
    display: String | Skip = None
    citation: Markdown | Skip = None
    url: Uri | Skip = None
    resource: Canonical | Skip = None


class DataRequirement(Element):
    type: Code
    profile: List[Canonical] | Skip = None
    mustSupport: List[String] | Skip = None


class Resource(BaseModel):
    """Elements every resource has. ``id`` is ignored on create (the server assigns one)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    id: FhirId | Skip = None
    meta: Meta | Skip = None
    language: Code | Skip = None


class DomainResource(Resource):
    extension: List[Extension] | Skip = None
