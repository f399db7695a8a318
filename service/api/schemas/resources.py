"""Slim models of the resource types the service stores: the elements it reads and checks.

Each model lists the elements the service (and the protocol) reads, with the R4 cardinality,
required elements and required code bindings the server enforces. A request body may only hold
these elements (``<Type>Input`` is closed); the server itself accepts and stores any other
valid R4 element too, and returns it, so the response schema ``<Type>`` is open.
tests/openapi/test_schemas.py checks every element against the R4 definitions the server
validates with, so the models cannot drift from what the server does.
"""

from typing import Any, Literal

from pydantic import ConfigDict, Field

from service.api.schemas.base import (
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
    Markdown,
    Period,
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
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
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
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
    active: bool | Skip = None
    name: list[HumanName] | Skip = Field(None, min_length=1)
    telecom: list[ContactPoint] | Skip = Field(None, min_length=1)
    gender: Literal["male", "female", "other", "unknown"] | Skip = None
    birthDate: Date | Skip = None
    address: list[Address] | Skip = Field(None, min_length=1)


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
    model_config = _config(
        ("effectiveDateTime", "effectivePeriod", "effectiveInstant"), _OBS_VALUES
    )
    resourceType: Literal["Observation"]
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
    basedOn: list[Reference] | Skip = Field(None, min_length=1)
    partOf: list[Reference] | Skip = Field(None, min_length=1)
    status: ObservationStatus
    category: list[CodeableConcept] | Skip = Field(None, min_length=1)
    code: CodeableConcept
    subject: Reference | Skip = None
    focus: list[Reference] | Skip = Field(None, min_length=1)
    encounter: Reference | Skip = None
    effectiveDateTime: DateTime | Skip = None
    effectivePeriod: Period | Skip = None
    effectiveInstant: Instant | Skip = None
    issued: Instant | Skip = None
    performer: list[Reference] | Skip = Field(None, min_length=1)
    valueQuantity: Quantity | Skip = None
    valueCodeableConcept: CodeableConcept | Skip = None
    valueString: String | Skip = None
    valueBoolean: bool | Skip = None
    valueInteger: Integer | Skip = None
    dataAbsentReason: CodeableConcept | Skip = None
    interpretation: list[CodeableConcept] | Skip = Field(None, min_length=1)
    note: list[Annotation] | Skip = Field(None, min_length=1)
    bodySite: CodeableConcept | Skip = None
    method: CodeableConcept | Skip = None
    hasMember: list[Reference] | Skip = Field(None, min_length=1)
    derivedFrom: list[Reference] | Skip = Field(None, min_length=1)
    component: list[ObservationComponent] | Skip = Field(None, min_length=1)


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
    instantiatesCanonical: list[Canonical] | Skip = Field(None, min_length=1)
    code: CodeableConcept | Skip = None
    reasonCode: list[CodeableConcept] | Skip = Field(None, min_length=1)
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
    outcomeReference: list[Reference] | Skip = Field(None, min_length=1)
    progress: list[Annotation] | Skip = Field(None, min_length=1)
    reference: Reference | Skip = None
    detail: CarePlanActivityDetail | Skip = None


class CarePlan(DomainResource):
    __doc__ = "CarePlan: a patient's enrolment in the protocol." + _EXTRA_DOC
    resourceType: Literal["CarePlan"]
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
    instantiatesCanonical: list[Canonical] | Skip = Field(None, min_length=1)
    basedOn: list[Reference] | Skip = Field(None, min_length=1)
    status: Literal[
        "draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"
    ]
    intent: Literal["proposal", "plan", "order", "option"]
    category: list[CodeableConcept] | Skip = Field(None, min_length=1)
    title: String | Skip = None
    description: String | Skip = None
    subject: Reference
    period: Period | Skip = None
    created: DateTime | Skip = None
    author: Reference | Skip = None
    addresses: list[Reference] | Skip = Field(None, min_length=1)
    supportingInfo: list[Reference] | Skip = Field(None, min_length=1)
    activity: list[CarePlanActivity] | Skip = Field(None, min_length=1)
    note: list[Annotation] | Skip = Field(None, min_length=1)


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
    extension: list[Extension] | Skip = Field(None, min_length=1)
    title: String | Skip = None
    description: String | Skip = None
    code: list[CodeableConcept] | Skip = Field(None, min_length=1)
    timingTiming: Timing | Skip = None
    timingDuration: Duration | Skip = None
    timingDateTime: DateTime | Skip = None
    relatedAction: list[RelatedAction] | Skip = Field(None, min_length=1)
    definitionCanonical: Canonical | Skip = None


class PlanDefinitionAction(PlanDefinitionSubAction):
    """A protocol level (actions nest one level here: level -> exercises)."""

    model_config = _config(("timingTiming", "timingDuration", "timingDateTime"))
    action: list[PlanDefinitionSubAction] | Skip = Field(None, min_length=1)


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
    type: CodeableConcept | Skip = None
    subjectCodeableConcept: CodeableConcept | Skip = None
    purpose: Markdown | Skip = None
    usage: String | Skip = None
    relatedArtifact: list[RelatedArtifact] | Skip = Field(None, min_length=1)
    goal: list[PlanDefinitionGoal] | Skip = Field(None, min_length=1)
    action: list[PlanDefinitionAction] | Skip = Field(None, min_length=1)


class ActivityDefinition(_Definition):
    __doc__ = "ActivityDefinition: one exercise of the protocol." + _EXTRA_DOC
    model_config = _config(("timingTiming", "timingDuration", "timingDateTime"))
    resourceType: Literal["ActivityDefinition"]
    purpose: Markdown | Skip = None
    usage: String | Skip = None
    relatedArtifact: list[RelatedArtifact] | Skip = Field(None, min_length=1)
    kind: Code | Skip = None
    code: CodeableConcept | Skip = None
    intent: RequestIntent | Skip = None
    priority: RequestPriority | Skip = None
    timingTiming: Timing | Skip = None
    timingDuration: Duration | Skip = None
    timingDateTime: DateTime | Skip = None
    bodySite: list[CodeableConcept] | Skip = Field(None, min_length=1)


# --- CodeSystem / Questionnaire / QuestionnaireResponse --------------------------------------


class CodeSystemConcept(Element):
    code: Code
    display: String | Skip = None
    definition: String | Skip = None


class CodeSystem(_Definition):
    __doc__ = "CodeSystem: the service's own codes." + _EXTRA_DOC
    resourceType: Literal["CodeSystem"]
    caseSensitive: bool | Skip = None
    content: Literal["not-present", "example", "fragment", "complete", "supplement"]
    count: UnsignedInt | Skip = None
    concept: list[CodeSystemConcept] | Skip = Field(None, min_length=1)


QuestionnaireItemType = Literal[
    "group",
    "display",
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
    code: list[Coding] | Skip = Field(None, min_length=1)
    text: String | Skip = None
    type: QuestionnaireItemType
    required: bool | Skip = None
    repeats: bool | Skip = None
    answerOption: list[QuestionnaireAnswerOption] | Skip = Field(None, min_length=1)


class QuestionnaireItem(QuestionnaireSubItem):
    """An item; groups nest one level here."""

    item: list[QuestionnaireSubItem] | Skip = Field(None, min_length=1)


class Questionnaire(_Definition):
    __doc__ = "Questionnaire: the session report and the red-flag screen." + _EXTRA_DOC
    resourceType: Literal["Questionnaire"]
    subjectType: list[Code] | Skip = Field(None, min_length=1)
    code: list[Coding] | Skip = Field(None, min_length=1)
    item: list[QuestionnaireItem] | Skip = Field(None, min_length=1)


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
    answer: list[QuestionnaireResponseAnswer] | Skip = Field(None, min_length=1)


class QuestionnaireResponseItem(QuestionnaireResponseSubItem):
    item: list[QuestionnaireResponseSubItem] | Skip = Field(None, min_length=1)


class QuestionnaireResponse(DomainResource):
    __doc__ = "QuestionnaireResponse: a filled session report or red-flag screen." + _EXTRA_DOC
    resourceType: Literal["QuestionnaireResponse"]
    identifier: Identifier | Skip = None
    basedOn: list[Reference] | Skip = Field(None, min_length=1)
    questionnaire: Canonical | Skip = None
    status: Literal["in-progress", "completed", "amended", "entered-in-error", "stopped"]
    subject: Reference | Skip = None
    authored: DateTime | Skip = None
    author: Reference | Skip = None
    item: list[QuestionnaireResponseItem] | Skip = Field(None, min_length=1)


# --- Requests and records ---------------------------------------------------------------------


class ServiceRequest(DomainResource):
    __doc__ = "ServiceRequest: e.g. a clinician review the protocol asks for." + _EXTRA_DOC
    model_config = _config(("occurrenceDateTime", "occurrencePeriod", "occurrenceTiming"))
    resourceType: Literal["ServiceRequest"]
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
    instantiatesCanonical: list[Canonical] | Skip = Field(None, min_length=1)
    basedOn: list[Reference] | Skip = Field(None, min_length=1)
    status: RequestStatus
    intent: RequestIntent
    category: list[CodeableConcept] | Skip = Field(None, min_length=1)
    priority: RequestPriority | Skip = None
    doNotPerform: bool | Skip = None
    code: CodeableConcept | Skip = None
    subject: Reference
    occurrenceDateTime: DateTime | Skip = None
    occurrencePeriod: Period | Skip = None
    occurrenceTiming: Timing | Skip = None
    authoredOn: DateTime | Skip = None
    requester: Reference | Skip = None
    reasonCode: list[CodeableConcept] | Skip = Field(None, min_length=1)
    reasonReference: list[Reference] | Skip = Field(None, min_length=1)
    supportingInfo: list[Reference] | Skip = Field(None, min_length=1)
    note: list[Annotation] | Skip = Field(None, min_length=1)


class Condition(DomainResource):
    __doc__ = "Condition: e.g. the low back pain episode." + _EXTRA_DOC
    model_config = _config(("onsetDateTime", "onsetPeriod", "onsetString"))
    resourceType: Literal["Condition"]
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
    clinicalStatus: CodeableConcept | Skip = None
    verificationStatus: CodeableConcept | Skip = None
    category: list[CodeableConcept] | Skip = Field(None, min_length=1)
    severity: CodeableConcept | Skip = None
    code: CodeableConcept | Skip = None
    bodySite: list[CodeableConcept] | Skip = Field(None, min_length=1)
    subject: Reference
    onsetDateTime: DateTime | Skip = None
    onsetPeriod: Period | Skip = None
    onsetString: String | Skip = None
    recordedDate: DateTime | Skip = None
    note: list[Annotation] | Skip = Field(None, min_length=1)


class Procedure(DomainResource):
    __doc__ = "Procedure." + _EXTRA_DOC
    model_config = _config(("performedDateTime", "performedPeriod"))
    resourceType: Literal["Procedure"]
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
    instantiatesCanonical: list[Canonical] | Skip = Field(None, min_length=1)
    basedOn: list[Reference] | Skip = Field(None, min_length=1)
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
    note: list[Annotation] | Skip = Field(None, min_length=1)


class GuidanceResponse(DomainResource):
    __doc__ = (
        "GuidanceResponse: one protocol decision (reasonCode: the decision and the rules that "
        "fired; note: the explanation; outputParameters: the features it was computed from)."
        + _EXTRA_DOC
    )
    model_config = _config(
        ("moduleUri", "moduleCanonical", "moduleCodeableConcept"),
        anyOf=[
            {"required": ["moduleUri"]},
            {"required": ["moduleCanonical"]},
            {"required": ["moduleCodeableConcept"]},
        ],
    )
    resourceType: Literal["GuidanceResponse"]
    requestIdentifier: Identifier | Skip = None
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
    moduleUri: Uri | Skip = None
    moduleCanonical: Canonical | Skip = None
    moduleCodeableConcept: CodeableConcept | Skip = None
    status: Literal[
        "success", "data-requested", "data-required", "in-progress", "failure", "entered-in-error"
    ]
    subject: Reference | Skip = None
    occurrenceDateTime: DateTime | Skip = None
    performer: Reference | Skip = None
    reasonCode: list[CodeableConcept] | Skip = Field(None, min_length=1)
    reasonReference: list[Reference] | Skip = Field(None, min_length=1)
    note: list[Annotation] | Skip = Field(None, min_length=1)
    outputParameters: Reference | Skip = None
    result: Reference | Skip = None
    dataRequirement: list[DataRequirement] | Skip = Field(None, min_length=1)


class TaskRestriction(Element):
    repetitions: Integer | Skip = Field(None, ge=1)
    period: Period | Skip = None
    recipient: list[Reference] | Skip = Field(None, min_length=1)


class Task(DomainResource):
    __doc__ = "Task: e.g. 'retry Flexion in Lying' inside a window after a hold-back." + _EXTRA_DOC
    resourceType: Literal["Task"]
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
    instantiatesCanonical: Canonical | Skip = None
    basedOn: list[Reference] | Skip = Field(None, min_length=1)
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
    note: list[Annotation] | Skip = Field(None, min_length=1)
    restriction: TaskRestriction | Skip = None


class DetectedIssue(DomainResource):
    __doc__ = "DetectedIssue: a safety finding of the protocol (e.g. a red flag)." + _EXTRA_DOC
    model_config = _config(("identifiedDateTime", "identifiedPeriod"))
    resourceType: Literal["DetectedIssue"]
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
    status: ObservationStatus
    code: CodeableConcept | Skip = None
    severity: Literal["high", "moderate", "low"] | Skip = None
    patient: Reference | Skip = None
    identifiedDateTime: DateTime | Skip = None
    identifiedPeriod: Period | Skip = None
    author: Reference | Skip = None
    implicated: list[Reference] | Skip = Field(None, min_length=1)
    detail: String | Skip = None
    reference: Uri | Skip = None


class CommunicationRequestPayload(Element):
    model_config = _config(
        ("contentString", "contentReference"),
        anyOf=[{"required": ["contentString"]}, {"required": ["contentReference"]}],
    )
    contentString: String | Skip = None
    contentReference: Reference | Skip = None


class CommunicationRequest(DomainResource):
    __doc__ = "CommunicationRequest: a message to the patient (e.g. stop and rest)." + _EXTRA_DOC
    resourceType: Literal["CommunicationRequest"]
    identifier: list[Identifier] | Skip = Field(None, min_length=1)
    basedOn: list[Reference] | Skip = Field(None, min_length=1)
    status: RequestStatus
    category: list[CodeableConcept] | Skip = Field(None, min_length=1)
    priority: RequestPriority | Skip = None
    subject: Reference | Skip = None
    about: list[Reference] | Skip = Field(None, min_length=1)
    payload: list[CommunicationRequestPayload] | Skip = Field(None, min_length=1)
    authoredOn: DateTime | Skip = None
    recipient: list[Reference] | Skip = Field(None, min_length=1)
    reasonCode: list[CodeableConcept] | Skip = Field(None, min_length=1)


class ProvenanceAgent(Element):
    type: CodeableConcept | Skip = None
    role: list[CodeableConcept] | Skip = Field(None, min_length=1)
    who: Reference
    onBehalfOf: Reference | Skip = None


class ProvenanceEntity(Element):
    role: Literal["derivation", "revision", "quotation", "source", "removal"]
    what: Reference


class Provenance(DomainResource):
    __doc__ = "Provenance: which inputs and protocol version a decision came from." + _EXTRA_DOC
    resourceType: Literal["Provenance"]
    target: list[Reference] = Field(min_length=1)
    occurredDateTime: DateTime | Skip = None
    recorded: Instant
    policy: list[Uri] | Skip = Field(None, min_length=1)
    reason: list[CodeableConcept] | Skip = Field(None, min_length=1)
    activity: CodeableConcept | Skip = None
    agent: list[ProvenanceAgent] = Field(min_length=1)
    entity: list[ProvenanceEntity] | Skip = Field(None, min_length=1)


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
        QuestionnaireResponse,
        ServiceRequest,
        Condition,
        Procedure,
        GuidanceResponse,
        Task,
        DetectedIssue,
        CommunicationRequest,
        Provenance,
    )
}

__all__ = ["STORED_TYPES", "FhirId", "Range"]
