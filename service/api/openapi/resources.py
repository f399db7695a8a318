"""Slim models of the resource types the service stores: the elements it reads and checks.

Each model lists the elements the service (and the protocol) reads, with the R4 cardinality,
required elements and required code bindings the server enforces. A request body may only hold
these elements (``<Type>Input`` is closed); the server itself accepts and stores any other
valid R4 element too, and returns it, so the response schema ``<Type>`` is open.
tests/openapi/test_schemas.py checks every element against the R4 definitions the server
validates with, so the models cannot drift from what the server does.
"""

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from service.api.openapi.base import (
    Address,
    Annotation,
    Canonical,
    Code,
    CodeableConcept,
    Coding,
    ContactPoint,
    DataRequirement,
    Date,
    DateTime,
    Decimal,
    DomainResource,
    Duration,
    Element,
    Extension,
    FhirId,
    HumanName,
    Identifier,
    Instant,
    Integer,
    List,
    Markdown,
    Period,
    PositiveInt,
    Quantity,
    Range,
    Reference,
    RelatedArtifact,
    Skip,
    String,
    Timing,
    UnsignedInt,
    Uri,
    one_of,
    one_required,
)

_EXTRA_DOC = (
    " Other R4 elements of this type are accepted when valid and returned as stored; the "
    "request schema lists the elements this service reads."
)
PublicationStatus = Literal["draft", "active", "retired", "unknown"]
RequestStatus = Literal[
    "draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"
]
RequestIntent = Literal[
    "proposal",
    "plan",
    "directive",
    "order",
    "original-order",
    "reflex-order",
    "filler-order",
    "instance-order",
    "option",
]
RequestPriority = Literal["routine", "urgent", "asap", "stat"]
ObservationStatus = Literal[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
]


def _config(*groups: tuple[str, ...], **extra: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={**one_of(*groups), **extra})


class _Definition(DomainResource):
    """Common elements of the knowledge artifacts (PlanDefinition, ActivityDefinition, ...)."""

    url: Uri | Skip = None
    version: String | Skip = None
    name: String | Skip = None
    title: String | Skip = None
    status: PublicationStatus
    experimental: bool | Skip = None
    date: DateTime | Skip = None
    publisher: String | Skip = None
    description: Markdown | Skip = None


# --- Patient ---------------------------------------------------------------------------------


class Patient(DomainResource):
    __doc__ = "Patient." + _EXTRA_DOC
    resourceType: Literal["Patient"]
    identifier: List[Identifier] | Skip = None
    active: bool | Skip = None
    name: List[HumanName] | Skip = None
    telecom: List[ContactPoint] | Skip = None
    gender: Literal["male", "female", "other", "unknown"] | Skip = None
    birthDate: Date | Skip = None
    address: List[Address] | Skip = None


# --- Observation -----------------------------------------------------------------------------

_OBS_VALUES = (
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
)


class ObservationComponent(Element):
    model_config = _config(_OBS_VALUES)
    code: CodeableConcept
    valueQuantity: Quantity | Skip = None
    valueCodeableConcept: CodeableConcept | Skip = None
    valueString: String | Skip = None
    valueBoolean: bool | Skip = None
    valueInteger: Integer | Skip = None
    dataAbsentReason: CodeableConcept | Skip = None


class Observation(DomainResource):
    __doc__ = (
        "Observation: a session panel (code flexion-session, hasMember the repetitions), a "
        "repetition or daily pain score (LOINC 72514-3), or patient state." + _EXTRA_DOC
    )
    # obs-6: dataAbsentReason only without a value[x], so it joins the value[x] choice group.
    model_config = _config(
        ("effectiveDateTime", "effectivePeriod", "effectiveInstant"),
        ("dataAbsentReason", *_OBS_VALUES),
    )
    resourceType: Literal["Observation"]
    identifier: List[Identifier] | Skip = None
    basedOn: List[Reference] | Skip = None
    partOf: List[Reference] | Skip = None
    status: ObservationStatus
    category: List[CodeableConcept] | Skip = None
    code: CodeableConcept
    subject: Reference | Skip = None
    focus: List[Reference] | Skip = None
    encounter: Reference | Skip = None
    effectiveDateTime: DateTime | Skip = None
    effectivePeriod: Period | Skip = None
    effectiveInstant: Instant | Skip = None
    issued: Instant | Skip = None
    performer: List[Reference] | Skip = None
    valueQuantity: Quantity | Skip = None
    valueCodeableConcept: CodeableConcept | Skip = None
    valueString: String | Skip = None
    valueBoolean: bool | Skip = None
    valueInteger: Integer | Skip = None
    dataAbsentReason: CodeableConcept | Skip = None
    interpretation: List[CodeableConcept] | Skip = None
    note: List[Annotation] | Skip = None
    bodySite: CodeableConcept | Skip = None
    method: CodeableConcept | Skip = None
    hasMember: List[Reference] | Skip = None
    derivedFrom: List[Reference] | Skip = None
    component: List[ObservationComponent] | Skip = None


# --- CarePlan --------------------------------------------------------------------------------


class CarePlanActivityDetail(Element):
    model_config = _config(("scheduledTiming", "scheduledPeriod", "scheduledString"))
    kind: (
        Literal[
            "Appointment",
            "CommunicationRequest",
            "DeviceRequest",
            "MedicationRequest",
            "NutritionOrder",
            "Task",
            "ServiceRequest",
            "VisionPrescription",
        ]
        | Skip
    ) = None
    instantiatesCanonical: List[Canonical] | Skip = None
    code: CodeableConcept | Skip = None
    reasonCode: List[CodeableConcept] | Skip = None
    status: Literal[
        "not-started",
        "scheduled",
        "in-progress",
        "on-hold",
        "completed",
        "cancelled",
        "stopped",
        "unknown",
        "entered-in-error",
    ]
    statusReason: CodeableConcept | Skip = None
    doNotPerform: bool | Skip = None
    scheduledTiming: Timing | Skip = None
    scheduledPeriod: Period | Skip = None
    scheduledString: String | Skip = None
    description: String | Skip = None


class CarePlanActivity(Element):
    outcomeReference: List[Reference] | Skip = None
    progress: List[Annotation] | Skip = None
    reference: Reference | Skip = None
    detail: CarePlanActivityDetail | Skip = None


class CarePlan(DomainResource):
    __doc__ = "CarePlan: a patient's enrolment in the protocol." + _EXTRA_DOC
    resourceType: Literal["CarePlan"]
    identifier: List[Identifier] | Skip = None
    instantiatesCanonical: List[Canonical] | Skip = None
    basedOn: List[Reference] | Skip = None
    status: Literal[
        "draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"
    ]
    intent: Literal["proposal", "plan", "order", "option"]
    category: List[CodeableConcept] | Skip = None
    title: String | Skip = None
    description: String | Skip = None
    subject: Reference
    period: Period | Skip = None
    created: DateTime | Skip = None
    author: Reference | Skip = None
    addresses: List[Reference] | Skip = None
    supportingInfo: List[Reference] | Skip = None
    activity: List[CarePlanActivity] | Skip = None
    note: List[Annotation] | Skip = None


# --- PlanDefinition / ActivityDefinition ------------------------------------------------------


class RelatedAction(Element):
    actionId: FhirId
    relationship: Literal[
        "before-start",
        "before",
        "before-end",
        "concurrent-with-start",
        "concurrent",
        "concurrent-with-end",
        "after-start",
        "after",
        "after-end",
    ]
    offsetDuration: Duration | Skip = None


class PlanDefinitionSubAction(Element):
    model_config = _config(("timingTiming", "timingDuration", "timingDateTime"))
    id: String | Skip = None
    extension: List[Extension] | Skip = None
    title: String | Skip = None
    description: String | Skip = None
    code: List[CodeableConcept] | Skip = None
    timingTiming: Timing | Skip = None
    timingDuration: Duration | Skip = None
    timingDateTime: DateTime | Skip = None
    relatedAction: List[RelatedAction] | Skip = None
    definitionCanonical: Canonical | Skip = None


class PlanDefinitionAction(PlanDefinitionSubAction):
    """A protocol level (actions nest one level here: level -> exercises)."""

    model_config = _config(("timingTiming", "timingDuration", "timingDateTime"))
    action: List[PlanDefinitionSubAction] | Skip = None


class PlanDefinitionGoal(Element):
    category: CodeableConcept | Skip = None
    description: CodeableConcept
    priority: CodeableConcept | Skip = None


class PlanDefinition(_Definition):
    __doc__ = (
        "PlanDefinition: the Flexion in Lying protocol; its decision parameters are "
        "extensions." + _EXTRA_DOC
    )
    resourceType: Literal["PlanDefinition"]
    identifier: List[Identifier] | Skip = None
    type: CodeableConcept | Skip = None
    subjectCodeableConcept: CodeableConcept | Skip = None
    purpose: Markdown | Skip = None
    usage: String | Skip = None
    relatedArtifact: List[RelatedArtifact] | Skip = None
    goal: List[PlanDefinitionGoal] | Skip = None
    action: List[PlanDefinitionAction] | Skip = None


class ActivityDefinition(_Definition):
    __doc__ = "ActivityDefinition: one exercise of the protocol." + _EXTRA_DOC
    model_config = _config(("timingTiming", "timingDuration", "timingDateTime"))
    resourceType: Literal["ActivityDefinition"]
    identifier: List[Identifier] | Skip = None
    purpose: Markdown | Skip = None
    usage: String | Skip = None
    relatedArtifact: List[RelatedArtifact] | Skip = None
    kind: Code | Skip = None
    code: CodeableConcept | Skip = None
    intent: RequestIntent | Skip = None
    priority: RequestPriority | Skip = None
    timingTiming: Timing | Skip = None
    timingDuration: Duration | Skip = None
    timingDateTime: DateTime | Skip = None
    bodySite: List[CodeableConcept] | Skip = None


# --- CodeSystem / Questionnaire / QuestionnaireResponse --------------------------------------


class CodeSystemConcept(Element):
    code: Code
    display: String | Skip = None
    definition: String | Skip = None


class CodeSystem(_Definition):
    __doc__ = "CodeSystem: the service's own codes." + _EXTRA_DOC
    resourceType: Literal["CodeSystem"]
    identifier: List[Identifier] | Skip = None
    caseSensitive: bool | Skip = None
    content: Literal["not-present", "example", "fragment", "complete", "supplement"]
    count: UnsignedInt | Skip = None
    concept: List[CodeSystemConcept] | Skip = None


QuestionnaireItemType = Literal[
    "group",
    "display",
    "question",
    "boolean",
    "decimal",
    "integer",
    "date",
    "dateTime",
    "time",
    "string",
    "text",
    "url",
    "choice",
    "open-choice",
    "attachment",
    "reference",
    "quantity",
]


class QuestionnaireAnswerOption(Element):
    model_config = _config(("valueInteger", "valueString", "valueCoding"))
    valueInteger: Integer | Skip = None
    valueString: String | Skip = None
    valueCoding: Coding | Skip = None


class QuestionnaireSubItem(Element):
    linkId: String
    code: List[Coding] | Skip = None
    text: String | Skip = None
    type: QuestionnaireItemType
    required: bool | Skip = None
    repeats: bool | Skip = None
    answerOption: List[QuestionnaireAnswerOption] | Skip = None


class QuestionnaireItem(QuestionnaireSubItem):
    """An item; groups nest one level here."""

    item: List[QuestionnaireSubItem] | Skip = None


class Questionnaire(_Definition):
    __doc__ = "Questionnaire: the session report and the red-flag screen." + _EXTRA_DOC
    resourceType: Literal["Questionnaire"]
    identifier: List[Identifier] | Skip = None
    subjectType: List[Code] | Skip = None
    code: List[Coding] | Skip = None
    item: List[QuestionnaireItem] | Skip = None


_QR_VALUES = (
    "valueBoolean",
    "valueDecimal",
    "valueInteger",
    "valueDate",
    "valueDateTime",
    "valueString",
    "valueCoding",
    "valueQuantity",
)


class QuestionnaireResponseAnswer(Element):
    model_config = _config(_QR_VALUES)
    valueBoolean: bool | Skip = None
    valueDecimal: Decimal | Skip = None
    valueInteger: Integer | Skip = None
    valueDate: Date | Skip = None
    valueDateTime: DateTime | Skip = None
    valueString: String | Skip = None
    valueCoding: Coding | Skip = None
    valueQuantity: Quantity | Skip = None


class QuestionnaireResponseSubItem(Element):
    linkId: String
    text: String | Skip = None
    answer: List[QuestionnaireResponseAnswer] | Skip = None


class QuestionnaireResponseItem(QuestionnaireResponseSubItem):
    item: List[QuestionnaireResponseSubItem] | Skip = None


class QuestionnaireResponse(DomainResource):
    __doc__ = "QuestionnaireResponse: a filled session report or red-flag screen." + _EXTRA_DOC
    resourceType: Literal["QuestionnaireResponse"]
    identifier: Identifier | Skip = None
    basedOn: List[Reference] | Skip = None
    questionnaire: Canonical | Skip = None
    status: Literal["in-progress", "completed", "amended", "entered-in-error", "stopped"]
    subject: Reference | Skip = None
    authored: DateTime | Skip = None
    author: Reference | Skip = None
    item: List[QuestionnaireResponseItem] | Skip = None


# --- Requests and records ---------------------------------------------------------------------


class ServiceRequest(DomainResource):
    __doc__ = "ServiceRequest: e.g. a clinician review the protocol asks for." + _EXTRA_DOC
    model_config = _config(("occurrenceDateTime", "occurrencePeriod", "occurrenceTiming"))
    resourceType: Literal["ServiceRequest"]
    identifier: List[Identifier] | Skip = None
    instantiatesCanonical: List[Canonical] | Skip = None
    basedOn: List[Reference] | Skip = None
    status: RequestStatus
    intent: RequestIntent
    category: List[CodeableConcept] | Skip = None
    priority: RequestPriority | Skip = None
    doNotPerform: bool | Skip = None
    code: CodeableConcept | Skip = None
    subject: Reference
    occurrenceDateTime: DateTime | Skip = None
    occurrencePeriod: Period | Skip = None
    occurrenceTiming: Timing | Skip = None
    authoredOn: DateTime | Skip = None
    requester: Reference | Skip = None
    reasonCode: List[CodeableConcept] | Skip = None
    reasonReference: List[Reference] | Skip = None
    supportingInfo: List[Reference] | Skip = None
    note: List[Annotation] | Skip = None


class Condition(DomainResource):
    __doc__ = "Condition: e.g. the low back pain episode." + _EXTRA_DOC
    model_config = _config(("onsetDateTime", "onsetPeriod", "onsetString"))
    resourceType: Literal["Condition"]
    identifier: List[Identifier] | Skip = None
    clinicalStatus: CodeableConcept | Skip = None
    verificationStatus: CodeableConcept | Skip = None
    category: List[CodeableConcept] | Skip = None
    severity: CodeableConcept | Skip = None
    code: CodeableConcept | Skip = None
    bodySite: List[CodeableConcept] | Skip = None
    subject: Reference
    onsetDateTime: DateTime | Skip = None
    onsetPeriod: Period | Skip = None
    onsetString: String | Skip = None
    recordedDate: DateTime | Skip = None
    note: List[Annotation] | Skip = None


class Procedure(DomainResource):
    __doc__ = "Procedure." + _EXTRA_DOC
    model_config = _config(("performedDateTime", "performedPeriod"))
    resourceType: Literal["Procedure"]
    identifier: List[Identifier] | Skip = None
    instantiatesCanonical: List[Canonical] | Skip = None
    basedOn: List[Reference] | Skip = None
    status: Literal[
        "preparation",
        "in-progress",
        "not-done",
        "on-hold",
        "stopped",
        "completed",
        "entered-in-error",
        "unknown",
    ]
    category: CodeableConcept | Skip = None
    code: CodeableConcept | Skip = None
    subject: Reference
    performedDateTime: DateTime | Skip = None
    performedPeriod: Period | Skip = None
    note: List[Annotation] | Skip = None


class GuidanceResponse(DomainResource):
    __doc__ = (
        "GuidanceResponse: one protocol decision (reasonCode: the decision and the rules that "
        "fired; note: the explanation; outputParameters: the features it was computed from)."
        + _EXTRA_DOC
    )
    model_config = _config(
        ("moduleUri", "moduleCanonical", "moduleCodeableConcept"),
        **one_required("moduleUri", "moduleCanonical", "moduleCodeableConcept"),
    )
    resourceType: Literal["GuidanceResponse"]
    requestIdentifier: Identifier | Skip = None
    identifier: List[Identifier] | Skip = None
    moduleUri: Uri | Skip = None
    moduleCanonical: Canonical | Skip = None
    moduleCodeableConcept: CodeableConcept | Skip = None
    status: Literal[
        "success", "data-requested", "data-required", "in-progress", "failure", "entered-in-error"
    ]
    subject: Reference | Skip = None
    occurrenceDateTime: DateTime | Skip = None
    performer: Reference | Skip = None
    reasonCode: List[CodeableConcept] | Skip = None
    reasonReference: List[Reference] | Skip = None
    note: List[Annotation] | Skip = None
    outputParameters: Reference | Skip = None
    result: Reference | Skip = None
    dataRequirement: List[DataRequirement] | Skip = None


class TaskRestriction(Element):
    repetitions: PositiveInt | Skip = None
    period: Period | Skip = None
    recipient: List[Reference] | Skip = None


class Task(DomainResource):
    __doc__ = "Task: e.g. 'retry Flexion in Lying' inside a window after a hold-back." + _EXTRA_DOC
    resourceType: Literal["Task"]
    identifier: List[Identifier] | Skip = None
    instantiatesCanonical: Canonical | Skip = None
    basedOn: List[Reference] | Skip = None
    status: Literal[
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    ]
    intent: Literal[
        "unknown",
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    ]
    priority: RequestPriority | Skip = None
    code: CodeableConcept | Skip = None
    description: String | Skip = None
    focus: Reference | Skip = None
    for_: Reference | Skip = Field(None, alias="for")
    executionPeriod: Period | Skip = None
    authoredOn: DateTime | Skip = None
    lastModified: DateTime | Skip = None
    owner: Reference | Skip = None
    reasonCode: CodeableConcept | Skip = None
    note: List[Annotation] | Skip = None
    restriction: TaskRestriction | Skip = None


class DetectedIssue(DomainResource):
    __doc__ = "DetectedIssue: a safety finding of the protocol (e.g. a red flag)." + _EXTRA_DOC
    model_config = _config(("identifiedDateTime", "identifiedPeriod"))
    resourceType: Literal["DetectedIssue"]
    identifier: List[Identifier] | Skip = None
    status: ObservationStatus
    code: CodeableConcept | Skip = None
    severity: Literal["high", "moderate", "low"] | Skip = None
    patient: Reference | Skip = None
    identifiedDateTime: DateTime | Skip = None
    identifiedPeriod: Period | Skip = None
    author: Reference | Skip = None
    implicated: List[Reference] | Skip = None
    detail: String | Skip = None
    reference: Uri | Skip = None


class CommunicationRequestPayload(Element):
    model_config = _config(
        ("contentString", "contentReference"),
        **one_required("contentString", "contentReference"),
    )
    contentString: String | Skip = None
    contentReference: Reference | Skip = None


class CommunicationRequest(DomainResource):
    __doc__ = "CommunicationRequest: a message to the patient (e.g. stop and rest)." + _EXTRA_DOC
    resourceType: Literal["CommunicationRequest"]
    identifier: List[Identifier] | Skip = None
    basedOn: List[Reference] | Skip = None
    status: RequestStatus
    category: List[CodeableConcept] | Skip = None
    priority: RequestPriority | Skip = None
    subject: Reference | Skip = None
    about: List[Reference] | Skip = None
    payload: List[CommunicationRequestPayload] | Skip = None
    authoredOn: DateTime | Skip = None
    recipient: List[Reference] | Skip = None
    reasonCode: List[CodeableConcept] | Skip = None


class ProvenanceAgent(Element):
    type: CodeableConcept | Skip = None
    role: List[CodeableConcept] | Skip = None
    who: Reference
    onBehalfOf: Reference | Skip = None


class ProvenanceEntity(Element):
    role: Literal["derivation", "revision", "quotation", "source", "removal"]
    what: Reference


class Provenance(DomainResource):
    __doc__ = "Provenance: which inputs and protocol version a decision came from." + _EXTRA_DOC
    resourceType: Literal["Provenance"]
    target: List[Reference]
    occurredDateTime: DateTime | Skip = None
    recorded: Instant
    policy: List[Uri] | Skip = None
    reason: List[CodeableConcept] | Skip = None
    activity: CodeableConcept | Skip = None
    agent: List[ProvenanceAgent]
    entity: List[ProvenanceEntity] | Skip = None


class PrimitiveExtensions(Element):
    """The extensions of a primitive element (``_criteria``, ``_payload`` in JSON)."""

    extension: List[Extension]


class SubscriptionChannel(Element):
    type: Literal["rest-hook", "websocket", "email", "sms", "message"] = Field(
        description="rest-hook: the only channel served (others answer 422)"
    )
    endpoint: Uri | Skip = Field(
        None, description="Where notifications are POSTed: under CAREPLAN_SUBSCRIPTION_ENDPOINTS"
    )
    payload: Code | Skip = Field(None, description="application/fhir+json")
    payload_extensions: PrimitiveExtensions | Skip = Field(
        None,
        alias="_payload",
        description="The backport-payload-content extension: empty | id-only | full-resource",
    )
    header: List[String] | Skip = Field(
        None, description="'Name: value' headers sent with every notification"
    )
    extension: List[Extension] | Skip = Field(
        None,
        description="backport-heartbeat-period, backport-timeout, backport-max-count, and the "
        "signing secret (subscription-signing-secret, never read back)",
    )


class Subscription(DomainResource):
    __doc__ = (
        "Subscription: a topic-based subscription (R4 Subscriptions Backport IG)." + _EXTRA_DOC
    )
    resourceType: Literal["Subscription"]
    status: Literal["requested", "active", "error", "off"]
    end: Instant | Skip = None
    reason: String
    criteria: String = Field(description="The topic's canonical URL")
    criteria_extensions: PrimitiveExtensions | Skip = Field(
        None, alias="_criteria", description="backport-filter-criteria extensions"
    )
    error: String | Skip = None
    channel: SubscriptionChannel


class OperationDefinitionParameter(Element):
    name: Code
    use: Literal["in", "out"]
    min: Integer
    max: String
    documentation: String | Skip = None
    type: Code | Skip = None


class OperationDefinition(_Definition):
    __doc__ = "OperationDefinition: $apply, $submit-session, $evaluate." + _EXTRA_DOC
    resourceType: Literal["OperationDefinition"]
    name: String
    kind: Literal["operation", "query"]
    code: Code
    resource: List[Code] | Skip = None
    system: bool
    type: bool
    instance: bool
    parameter: List[OperationDefinitionParameter] | Skip = None


class SearchParameter(DomainResource):  # not a _Definition: R4 gives it no title
    __doc__ = (
        "SearchParameter: the service's own search parameters (Observation non-session-date)."
        + _EXTRA_DOC
    )
    resourceType: Literal["SearchParameter"]
    url: Uri
    version: String | Skip = None
    name: String
    status: PublicationStatus
    experimental: bool | Skip = None
    date: DateTime | Skip = None
    publisher: String | Skip = None
    description: Markdown
    code: Code
    base: List[Code]
    type: Literal[
        "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"
    ]
    expression: String | Skip = None
    target: List[Code] | Skip = None
    comparator: List[Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]] | Skip = None


Base64Binary = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/=\s]+$", description="base64")]


class AuditEventNetwork(Element):
    address: String | Skip = None
    type: Literal["1", "2", "3", "4", "5"] | Skip = None


class AuditEventAgent(Element):
    extension: List[Extension] | Skip = None
    type: CodeableConcept | Skip = None
    who: Reference | Skip = None
    requestor: bool
    policy: List[Uri] | Skip = None
    network: AuditEventNetwork | Skip = None


class AuditEventSource(Element):
    site: String | Skip = None
    observer: Reference
    type: List[Coding] | Skip = None


class AuditEventEntity(Element):
    what: Reference | Skip = None
    type: Coding | Skip = None
    role: Coding | Skip = None
    query: Base64Binary | Skip = None


class AuditEvent(DomainResource):
    """AuditEvent (IHE BALP shape): one interaction with this service, who made it (client id,
    token jti, scopes, network address), what it touched and its outcome. Written by the
    service only: read and search it (system/AuditEvent.rs), never create, update or delete it."""

    resourceType: Literal["AuditEvent"]
    type: Coding
    subtype: List[Coding] | Skip = None
    action: Literal["C", "R", "U", "D", "E"] | Skip = None
    recorded: Instant
    outcome: Literal["0", "4", "8", "12"] | Skip = None
    outcomeDesc: String | Skip = None
    agent: List[AuditEventAgent]
    source: AuditEventSource
    entity: List[AuditEventEntity] | Skip = None


# Types the API only reads: their schemas describe responses, never a request body.
READ_ONLY_TYPES: dict[str, type[DomainResource]] = {"AuditEvent": AuditEvent}

STORED_TYPES: dict[str, type[DomainResource]] = {
    model.__name__: model
    for model in (
        Patient,
        Observation,
        CarePlan,
        PlanDefinition,
        ActivityDefinition,
        CodeSystem,
        Questionnaire,
        OperationDefinition,
        SearchParameter,
        QuestionnaireResponse,
        ServiceRequest,
        Condition,
        Procedure,
        GuidanceResponse,
        Task,
        DetectedIssue,
        CommunicationRequest,
        Provenance,
        Subscription,
    )
}

__all__ = ["READ_ONLY_TYPES", "STORED_TYPES", "FhirId", "Range"]
