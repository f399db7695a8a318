"""OperationOutcome, Bundle, Parameters, CapabilityStatement and a generic Resource."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.openapi.base import (
    Canonical,
    Code,
    CodeableConcept,
    Coding,
    DateTime,
    Decimal,
    Element,
    FhirId,
    Instant,
    Integer,
    List,
    Meta,
    Period,
    Quantity,
    Reference,
    Skip,
    String,
    UnsignedInt,
    Uri,
    one_of,
)

IssueType = Literal[
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "unknown",
    "expired",
    "forbidden",
    "suppressed",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "too-costly",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
    "informational",
]


class Resource(BaseModel):
    """Any FHIR resource (typed by its resourceType; see the type's own schema)."""

    model_config = ConfigDict(extra="allow")

    resourceType: String
    id: FhirId | Skip = None
    meta: Meta | Skip = None


class OperationOutcomeIssue(Element):
    severity: Literal["fatal", "error", "warning", "information"]
    code: IssueType
    details: CodeableConcept | Skip = None
    diagnostics: String | Skip = Field(None, description="Human-readable explanation")
    expression: List[String] | Skip = Field(
        None, description="FHIRPath of the element(s) the issue is about"
    )


class OperationOutcome(BaseModel):
    """Every error answer of this server, with the HTTP status telling its class."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["OperationOutcome"]
    id: FhirId | Skip = None
    issue: List[OperationOutcomeIssue]


class BundleLink(Element):
    relation: String = Field(description="self | next | previous | first | last")
    url: Uri


class BundleEntrySearch(Element):
    mode: Literal["match", "include", "outcome"] | Skip = None
    score: Decimal | Skip = None


class BundleEntryRequest(Element):
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
    url: Uri
    ifNoneExist: String | Skip = None
    ifMatch: String | Skip = None


class BundleEntryResponse(Element):
    status: String = Field(description="HTTP status code and phrase, e.g. '201 Created'")
    location: Uri | Skip = None
    etag: String | Skip = None
    lastModified: Instant | Skip = None
    outcome: OperationOutcome | Skip = None


class BundleEntry(Element):
    fullUrl: Uri | Skip = None
    resource: Resource | Skip = None
    search: BundleEntrySearch | Skip = None
    request: BundleEntryRequest | Skip = None
    response: BundleEntryResponse | Skip = None


class Bundle(BaseModel):
    """A Bundle of any type (history, batch-response, transaction-response, collection, ...)."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["Bundle"]
    id: FhirId | Skip = None
    meta: Meta | Skip = None
    type: Literal[
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
    ]
    timestamp: Instant | Skip = None
    total: UnsignedInt | Skip = None
    link: List[BundleLink] | Skip = None
    entry: List[BundleEntry] | Skip = None


# --- batch / transaction request body ---------------------------------------------------------


class TransactionEntryRequest(Element):
    method: Literal["GET", "POST", "PUT", "DELETE"] = Field(
        description="GET Type/id or Type?query, POST Type, PUT Type/id, DELETE Type/id "
        "(PATCH and HEAD are not supported)"
    )
    url: String = Field(
        description="Relative URL: for POST the resource's type, for PUT Type/<resource.id>"
    )


# --- Parameters (operation inputs and outputs) ------------------------------------------------

_PARAM_VALUES = (
    "valueBoolean",
    "valueInteger",
    "valueDecimal",
    "valueString",
    "valueCode",
    "valueUri",
    "valueCanonical",
    "valueDateTime",
    "valueInstant",
    "valueCoding",
    "valueCodeableConcept",
    "valueQuantity",
    "valuePeriod",
    "valueReference",
)


class ParametersPart(Element):
    model_config = ConfigDict(json_schema_extra=one_of(_PARAM_VALUES))
    name: String
    valueBoolean: bool | Skip = None
    valueInteger: Integer | Skip = None
    valueDecimal: Decimal | Skip = None
    valueString: String | Skip = None
    valueCode: Code | Skip = None
    valueUri: Uri | Skip = None
    valueCanonical: Canonical | Skip = None
    valueDateTime: DateTime | Skip = None
    valueInstant: Instant | Skip = None
    valueCoding: Coding | Skip = None
    valueCodeableConcept: CodeableConcept | Skip = None
    valueQuantity: Quantity | Skip = None
    valuePeriod: Period | Skip = None
    valueReference: Reference | Skip = None


class ParametersParameter(ParametersPart):
    model_config = ConfigDict(json_schema_extra=one_of((*_PARAM_VALUES, "resource")))
    resource: Resource | Skip = None
    part: List[ParametersPart] | Skip = None


class Parameters(BaseModel):
    """Operation parameters (FHIR Parameters)."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["Parameters"]
    id: FhirId | Skip = None
    parameter: List[ParametersParameter] | Skip = None


# --- CapabilityStatement ----------------------------------------------------------------------


class CapabilityInteraction(Element):
    code: Code


class CapabilitySearchParam(Element):
    name: String
    definition: Canonical | Skip = None
    type: Literal[
        "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"
    ]
    documentation: String | Skip = None


class CapabilityOperation(Element):
    name: String
    definition: Canonical


class CapabilityResource(Element):
    type: Code
    interaction: List[CapabilityInteraction] | Skip = None
    versioning: Literal["no-version", "versioned", "versioned-update"] | Skip = None
    readHistory: bool | Skip = None
    updateCreate: bool | Skip = None
    conditionalCreate: bool | Skip = None
    conditionalUpdate: bool | Skip = None
    conditionalDelete: Literal["not-supported", "single", "multiple"] | Skip = None
    documentation: String | Skip = None
    searchInclude: List[String] | Skip = None
    searchParam: List[CapabilitySearchParam] | Skip = None
    operation: List[CapabilityOperation] | Skip = None


class CapabilityRest(Element):
    mode: Literal["client", "server"]
    documentation: String | Skip = None
    resource: List[CapabilityResource] | Skip = None
    interaction: List[CapabilityInteraction] | Skip = None
    operation: List[CapabilityOperation] | Skip = None


class CapabilitySoftware(Element):
    name: String
    version: String | Skip = None


class CapabilityImplementation(Element):
    description: String
    url: Uri | Skip = None


class CapabilityStatement(BaseModel):
    """What this server really routes: types, interactions, search parameters, operations."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["CapabilityStatement"]
    status: Literal["draft", "active", "retired", "unknown"]
    date: DateTime
    publisher: String | Skip = None
    kind: Literal["instance", "capability", "requirements"]
    software: CapabilitySoftware | Skip = None
    implementation: CapabilityImplementation | Skip = None
    fhirVersion: Literal["4.0.1"]
    format: List[Code]
    rest: List[CapabilityRest] | Skip = None
