"""The search parameters the service supports, by resource type.

This table is the single source of truth (with the parameters the protocol adds through
``register`` at wiring time, service/wiring.py): the indexer writes rows for these parameters, the
search parser accepts only these, and the CapabilityStatement declares exactly these.
Paths are dotted JSON paths; a path step over an array visits every item.
"""

from dataclasses import dataclass
from functools import cache

from fhir.resources.R4B import get_fhir_model_class

SPEC_BASE = "http://hl7.org/fhir/SearchParameter"


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # token | reference | date | string | quantity | uri | number
    paths: tuple[str, ...]
    description: str
    targets: tuple[str, ...] = ()  # reference: allowed target types (empty = any)
    definition: str | None = None  # canonical of the SearchParameter, where HL7 defines one
    # (token parameter, system, code): a resource with any of these tokens gets no rows here.
    unless: tuple[tuple[str, str, str], ...] = ()


def _p(
    name: str,
    type_: str,
    paths: str,
    description: str,
    targets: tuple[str, ...] = (),
    definition: str | None = None,
) -> SearchParam:
    return SearchParam(name, type_, tuple(paths.split()), description, targets, definition)


# R4 defines some parameters once for several types: "clinical-*" (identifier, patient) for
# these, "conformance-*" (url, version, ...) for the conformance resources; the other types have
# their own "<Type>-identifier", "<Type>-url", ... (tests/fhir/test_search_param_definitions.py
# checks every definition against the official R4 SearchParameters).
_CLINICAL = frozenset(
    {"CarePlan", "Condition", "DetectedIssue", "Observation", "Procedure", "ServiceRequest"}
)
_CONFORMANCE = frozenset({"CodeSystem", "OperationDefinition", "SearchParameter"})


def _shared(resource: str, code: str) -> str:
    """The R4 definition of `code` on `resource` where R4 shares one among several types."""
    if resource in _CLINICAL and code in ("identifier", "patient"):
        return f"{SPEC_BASE}/clinical-{code}"
    if resource in _CONFORMANCE:
        return f"{SPEC_BASE}/conformance-{code}"
    return f"{SPEC_BASE}/{resource}-{code}"


def _subject(resource: str, path: str = "subject") -> list[SearchParam]:
    return [
        _p(
            "subject",
            "reference",
            path,
            f"Who the {resource} is about",
            definition=f"{SPEC_BASE}/{resource}-subject",
        ),
        _p(
            "patient",
            "reference",
            path,
            f"The patient the {resource} is about",
            ("Patient",),
            definition=_shared(resource, "patient"),
        ),
    ]


def _identifier(resource: str) -> SearchParam:
    return _p(
        "identifier",
        "token",
        "identifier",
        f"Business identifier of the {resource}",
        definition=_shared(resource, "identifier"),
    )


def _knowledge(resource: str) -> list[SearchParam]:
    lower = resource.lower()
    return [
        _p("url", "uri", "url", "Canonical URL", definition=_shared(resource, "url")),
        _p(
            "version",
            "token",
            "version",
            "Business version",
            definition=_shared(resource, "version"),
        ),
        _p(
            "status",
            "token",
            "status",
            "draft | active | retired | unknown",
            definition=_shared(resource, "status"),
        ),
        _p(
            "name",
            "string",
            "name",
            "Computationally friendly name",
            definition=_shared(resource, "name"),
        ),
        _p(
            "title",
            "string",
            "title",
            "Human-friendly name",
            definition=_shared(resource, "title"),
        ),
        _p(
            "identifier",
            "token",
            "identifier",
            f"Business identifier of the {lower}",
            definition=_shared(resource, "identifier"),
        ),
    ]


SEARCH_PARAMS: dict[str, list[SearchParam]] = {
    "Patient": [
        _p(
            "identifier",
            "token",
            "identifier",
            "A patient identifier",
            definition=f"{SPEC_BASE}/Patient-identifier",
        ),
        _p(
            "name", "string", "name", "Any part of the name", definition=f"{SPEC_BASE}/Patient-name"
        ),
        _p(
            "family",
            "string",
            "name.family",
            "Family name",
            definition=f"{SPEC_BASE}/individual-family",
        ),
        _p(
            "given",
            "string",
            "name.given",
            "Given name",
            definition=f"{SPEC_BASE}/individual-given",
        ),
        _p(
            "birthdate",
            "date",
            "birthDate",
            "Date of birth",
            definition=f"{SPEC_BASE}/individual-birthdate",
        ),
        _p(
            "gender",
            "token",
            "gender",
            "Administrative gender",
            definition=f"{SPEC_BASE}/individual-gender",
        ),
        _p(
            "active",
            "token",
            "active",
            "Whether the record is active",
            definition=f"{SPEC_BASE}/Patient-active",
        ),
    ],
    "PlanDefinition": _knowledge("PlanDefinition"),
    "ActivityDefinition": _knowledge("ActivityDefinition"),
    "CodeSystem": _knowledge("CodeSystem"),
    "Questionnaire": _knowledge("Questionnaire"),
    "OperationDefinition": [
        p for p in _knowledge("OperationDefinition") if p.name not in ("identifier", "title")
    ]
    + [
        _p(
            "code",
            "token",
            "code",
            "Name used to invoke the operation",
            definition=f"{SPEC_BASE}/OperationDefinition-code",
        )
    ],
    # The service's own search parameters are published as SearchParameter resources.
    "SearchParameter": [
        p for p in _knowledge("SearchParameter") if p.name not in ("identifier", "title")
    ]
    + [
        _p(
            "code",
            "token",
            "code",
            "Code used in URL",
            definition=f"{SPEC_BASE}/SearchParameter-code",
        ),
        _p(
            "base",
            "token",
            "base",
            "The resource type(s) this search parameter applies to",
            definition=f"{SPEC_BASE}/SearchParameter-base",
        ),
        _p(
            "type",
            "token",
            "type",
            "number | date | string | token | reference | composite | quantity | uri | special",
            definition=f"{SPEC_BASE}/SearchParameter-type",
        ),
    ],
    "QuestionnaireResponse": [
        _identifier("QuestionnaireResponse"),
        *_subject("QuestionnaireResponse"),
        _p(
            "questionnaire",
            "reference",
            "questionnaire",
            "The questionnaire answered",
            definition=f"{SPEC_BASE}/QuestionnaireResponse-questionnaire",
        ),
        _p(
            "status",
            "token",
            "status",
            "Status of the response",
            definition=f"{SPEC_BASE}/QuestionnaireResponse-status",
        ),
        _p(
            "authored",
            "date",
            "authored",
            "When the response was authored",
            definition=f"{SPEC_BASE}/QuestionnaireResponse-authored",
        ),
        _p(
            "based-on",
            "reference",
            "basedOn",
            "Plan or request fulfilled",
            definition=f"{SPEC_BASE}/QuestionnaireResponse-based-on",
        ),
        _p(
            "part-of",
            "reference",
            "partOf",
            "Procedure or observation this is part of",
            definition=f"{SPEC_BASE}/QuestionnaireResponse-part-of",
        ),
    ],
    "CarePlan": [
        _identifier("CarePlan"),
        *_subject("CarePlan"),
        _p(
            "status",
            "token",
            "status",
            "Status of the plan",
            definition=f"{SPEC_BASE}/CarePlan-status",
        ),
        _p(
            "intent",
            "token",
            "intent",
            "proposal | plan | order | option",
            definition=f"{SPEC_BASE}/CarePlan-intent",
        ),
        _p(
            "category",
            "token",
            "category",
            "Type of plan",
            definition=f"{SPEC_BASE}/CarePlan-category",
        ),
        _p(
            "date",
            "date",
            "period",
            "Time period the plan covers",
            definition=f"{SPEC_BASE}/clinical-date",
        ),
        _p(
            "based-on",
            "reference",
            "basedOn",
            "Fulfills CarePlan",
            definition=f"{SPEC_BASE}/CarePlan-based-on",
        ),
        _p(
            "part-of",
            "reference",
            "partOf",
            "Part of referenced CarePlan",
            definition=f"{SPEC_BASE}/CarePlan-part-of",
        ),
        _p(
            "instantiates-canonical",
            "reference",
            "instantiatesCanonical",
            "Instantiated protocol (PlanDefinition url|version)",
            definition=f"{SPEC_BASE}/CarePlan-instantiates-canonical",
        ),
        _p(
            "activity-code",
            "token",
            "activity.detail.code",
            "Detail type of activity",
            definition=f"{SPEC_BASE}/CarePlan-activity-code",
        ),
    ],
    "ServiceRequest": [
        _identifier("ServiceRequest"),
        *_subject("ServiceRequest"),
        _p(
            "status",
            "token",
            "status",
            "Status of the request",
            definition=f"{SPEC_BASE}/ServiceRequest-status",
        ),
        _p(
            "intent",
            "token",
            "intent",
            "Kind of request",
            definition=f"{SPEC_BASE}/ServiceRequest-intent",
        ),
        _p(
            "code",
            "token",
            "code",
            "What is being requested",
            definition=f"{SPEC_BASE}/clinical-code",
        ),
        _p(
            "category",
            "token",
            "category",
            "Classification of the request",
            definition=f"{SPEC_BASE}/ServiceRequest-category",
        ),
        _p(
            "based-on",
            "reference",
            "basedOn",
            "What the request fulfills",
            definition=f"{SPEC_BASE}/ServiceRequest-based-on",
        ),
        _p(
            "authored",
            "date",
            "authoredOn",
            "Date the request was signed",
            definition=f"{SPEC_BASE}/ServiceRequest-authored",
        ),
        _p(
            "instantiates-canonical",
            "reference",
            "instantiatesCanonical",
            "Instantiated ActivityDefinition or PlanDefinition",
            definition=f"{SPEC_BASE}/ServiceRequest-instantiates-canonical",
        ),
    ],
    "Observation": [
        _identifier("Observation"),
        *_subject("Observation"),
        _p(
            "code",
            "token",
            "code",
            "The code of the observation",
            definition=f"{SPEC_BASE}/clinical-code",
        ),
        _p(
            "status",
            "token",
            "status",
            "The status of the observation",
            definition=f"{SPEC_BASE}/Observation-status",
        ),
        _p(
            "category",
            "token",
            "category",
            "The classification of the observation",
            definition=f"{SPEC_BASE}/Observation-category",
        ),
        _p(
            "date",
            "date",
            "effectiveDateTime effectivePeriod effectiveInstant",
            "Clinically relevant time of the observation",
            definition=f"{SPEC_BASE}/clinical-date",
        ),
        _p(
            "based-on",
            "reference",
            "basedOn",
            "Plan or request fulfilled",
            definition=f"{SPEC_BASE}/Observation-based-on",
        ),
        _p(
            "has-member",
            "reference",
            "hasMember",
            "Related resource in the panel",
            definition=f"{SPEC_BASE}/Observation-has-member",
        ),
        _p(
            "part-of",
            "reference",
            "partOf",
            "Part of referenced event",
            definition=f"{SPEC_BASE}/Observation-part-of",
        ),
        _p(
            "focus",
            "reference",
            "focus",
            "What the observation is about, when not the subject",
            definition=f"{SPEC_BASE}/Observation-focus",
        ),
        _p(
            "value-quantity",
            "quantity",
            "valueQuantity",
            "The value of the observation",
            definition=f"{SPEC_BASE}/Observation-value-quantity",
        ),
        _p(
            "component-code",
            "token",
            "component.code",
            "The component code",
            definition=f"{SPEC_BASE}/Observation-component-code",
        ),
    ],
    "Condition": [
        _identifier("Condition"),
        *_subject("Condition"),
        _p(
            "code",
            "token",
            "code",
            "Code for the condition",
            definition=f"{SPEC_BASE}/clinical-code",
        ),
        _p(
            "clinical-status",
            "token",
            "clinicalStatus",
            "Clinical status",
            definition=f"{SPEC_BASE}/Condition-clinical-status",
        ),
        _p(
            "category",
            "token",
            "category",
            "Category of the condition",
            definition=f"{SPEC_BASE}/Condition-category",
        ),
        _p(
            "onset-date",
            "date",
            "onsetDateTime onsetPeriod",
            "Date of onset",
            definition=f"{SPEC_BASE}/Condition-onset-date",
        ),
        _p(
            "recorded-date",
            "date",
            "recordedDate",
            "Date recorded",
            definition=f"{SPEC_BASE}/Condition-recorded-date",
        ),
    ],
    "Procedure": [
        _identifier("Procedure"),
        *_subject("Procedure"),
        _p(
            "code",
            "token",
            "code",
            "Code of the procedure",
            definition=f"{SPEC_BASE}/clinical-code",
        ),
        _p(
            "status",
            "token",
            "status",
            "Status of the procedure",
            definition=f"{SPEC_BASE}/Procedure-status",
        ),
        _p(
            "date",
            "date",
            "performedDateTime performedPeriod",
            "When it was performed",
            definition=f"{SPEC_BASE}/clinical-date",
        ),
        _p(
            "based-on",
            "reference",
            "basedOn",
            "The request this fulfills",
            definition=f"{SPEC_BASE}/Procedure-based-on",
        ),
        _p(
            "part-of",
            "reference",
            "partOf",
            "Part of referenced event",
            definition=f"{SPEC_BASE}/Procedure-part-of",
        ),
        _p(
            "instantiates-canonical",
            "reference",
            "instantiatesCanonical",
            "Instantiated protocol or definition",
            definition=f"{SPEC_BASE}/Procedure-instantiates-canonical",
        ),
    ],
    "GuidanceResponse": [
        _p(
            "identifier",
            "token",
            "identifier",
            "Business identifier",
            definition=f"{SPEC_BASE}/GuidanceResponse-identifier",
        ),
        _p(
            "request",
            "token",
            "requestIdentifier",
            "The identifier of the request",
            definition=f"{SPEC_BASE}/GuidanceResponse-request",
        ),
        *_subject("GuidanceResponse"),
        _p("status", "token", "status", "success | data-requested | data-required | ..."),
        _p("date", "date", "occurrenceDateTime", "When the guidance was given"),
        _p("result", "reference", "result", "The CarePlan or RequestGroup the guidance changed"),
        _p("reason-code", "token", "reasonCode", "Decision code and fired rule ids"),
    ],
    "Task": [
        _identifier("Task"),
        _p(
            "subject",
            "reference",
            "for",
            "Beneficiary of the task",
            definition=f"{SPEC_BASE}/Task-subject",
        ),
        _p("for", "reference", "for", "Beneficiary of the task (Task.for)"),
        _p(
            "patient",
            "reference",
            "for",
            "Patient the task is for",
            ("Patient",),
            definition=f"{SPEC_BASE}/Task-patient",
        ),
        _p("status", "token", "status", "Task status", definition=f"{SPEC_BASE}/Task-status"),
        _p("intent", "token", "intent", "Task intent", definition=f"{SPEC_BASE}/Task-intent"),
        _p("code", "token", "code", "Task type", definition=f"{SPEC_BASE}/Task-code"),
        _p(
            "focus",
            "reference",
            "focus",
            "What the task acts on",
            definition=f"{SPEC_BASE}/Task-focus",
        ),
        _p(
            "based-on",
            "reference",
            "basedOn",
            "Request fulfilled by this task",
            definition=f"{SPEC_BASE}/Task-based-on",
        ),
        _p(
            "part-of",
            "reference",
            "partOf",
            "Composite task",
            definition=f"{SPEC_BASE}/Task-part-of",
        ),
        _p(
            "period",
            "date",
            "executionPeriod",
            "When the task was performed",
            definition=f"{SPEC_BASE}/Task-period",
        ),
        _p(
            "authored-on",
            "date",
            "authoredOn",
            "Creation date",
            definition=f"{SPEC_BASE}/Task-authored-on",
        ),
    ],
    "DetectedIssue": [
        _identifier("DetectedIssue"),
        _p(
            "patient",
            "reference",
            "patient",
            "Associated patient",
            ("Patient",),
            definition=f"{SPEC_BASE}/clinical-patient",
        ),
        _p("code", "token", "code", "Issue category", definition=f"{SPEC_BASE}/DetectedIssue-code"),
        _p(
            "implicated",
            "reference",
            "implicated",
            "Problem resource",
            definition=f"{SPEC_BASE}/DetectedIssue-implicated",
        ),
        _p(
            "identified",
            "date",
            "identifiedDateTime identifiedPeriod",
            "When identified",
            definition=f"{SPEC_BASE}/DetectedIssue-identified",
        ),
    ],
    "CommunicationRequest": [
        _identifier("CommunicationRequest"),
        *_subject("CommunicationRequest"),
        _p(
            "status",
            "token",
            "status",
            "Status of the request",
            definition=f"{SPEC_BASE}/CommunicationRequest-status",
        ),
        _p(
            "category",
            "token",
            "category",
            "Message category",
            definition=f"{SPEC_BASE}/CommunicationRequest-category",
        ),
        _p(
            "based-on",
            "reference",
            "basedOn",
            "Fulfills plan or proposal",
            definition=f"{SPEC_BASE}/CommunicationRequest-based-on",
        ),
        _p(
            "authored",
            "date",
            "authoredOn",
            "When the request transitioned to active",
            definition=f"{SPEC_BASE}/CommunicationRequest-authored",
        ),
        _p(
            "recipient",
            "reference",
            "recipient",
            "Message recipient",
            definition=f"{SPEC_BASE}/CommunicationRequest-recipient",
        ),
    ],
    "Provenance": [
        _p(
            "target",
            "reference",
            "target",
            "Target reference(s)",
            definition=f"{SPEC_BASE}/Provenance-target",
        ),
        _p(
            "patient",
            "reference",
            "target",
            "Target reference(s) that are patients",
            ("Patient",),
            definition=f"{SPEC_BASE}/Provenance-patient",
        ),
        _p(
            "recorded",
            "date",
            "recorded",
            "When the activity was recorded",
            definition=f"{SPEC_BASE}/Provenance-recorded",
        ),
        _p(
            "entity",
            "reference",
            "entity.what",
            "Identity of an input entity",
            definition=f"{SPEC_BASE}/Provenance-entity",
        ),
        _p(
            "agent",
            "reference",
            "agent.who",
            "Who participated",
            definition=f"{SPEC_BASE}/Provenance-agent",
        ),
    ],
    "AuditEvent": [
        _p(
            "date",
            "date",
            "recorded",
            "Time when the event was recorded",
            definition=f"{SPEC_BASE}/AuditEvent-date",
        ),
        _p(
            "type",
            "token",
            "type",
            "Type/identifier of event",
            definition=f"{SPEC_BASE}/AuditEvent-type",
        ),
        _p(
            "subtype",
            "token",
            "subtype",
            "More specific type/id for the event",
            definition=f"{SPEC_BASE}/AuditEvent-subtype",
        ),
        _p(
            "action",
            "token",
            "action",
            "Type of action performed during the event",
            definition=f"{SPEC_BASE}/AuditEvent-action",
        ),
        _p(
            "outcome",
            "token",
            "outcome",
            "Whether the event succeeded or failed",
            definition=f"{SPEC_BASE}/AuditEvent-outcome",
        ),
        _p(
            "agent",
            "reference",
            "agent.who",
            "Identifier of who (agent:identifier=<issuer>|<client id> finds a client)",
            definition=f"{SPEC_BASE}/AuditEvent-agent",
        ),
        _p(
            "entity",
            "reference",
            "entity.what",
            "Specific instance of resource",
            definition=f"{SPEC_BASE}/AuditEvent-entity",
        ),
        _p(
            "patient",
            "reference",
            "agent.who entity.what",
            "Identifier of the patient",
            ("Patient",),
            definition=f"{SPEC_BASE}/AuditEvent-patient",
        ),
    ],
    "Subscription": [
        _p(
            "status",
            "token",
            "status",
            "requested | active | error | off",
            definition=f"{SPEC_BASE}/Subscription-status",
        ),
        _p(
            "url",
            "uri",
            "channel.endpoint",
            "The notification endpoint",
            definition=f"{SPEC_BASE}/Subscription-url",
        ),
        _p(
            "criteria",
            "string",
            "criteria",
            "The topic's canonical URL",
            definition=f"{SPEC_BASE}/Subscription-criteria",
        ),
        _p(
            "type",
            "token",
            "channel.type",
            "The channel type (rest-hook)",
            definition=f"{SPEC_BASE}/Subscription-type",
        ),
    ],
}

# Parameters every type supports; they read the envelope, not the body.
COMMON_PARAMS: list[SearchParam] = [
    _p("_id", "token", "id", "Logical id of the resource", definition=f"{SPEC_BASE}/Resource-id"),
    _p(
        "_lastUpdated",
        "date",
        "meta.lastUpdated",
        "When the resource version last changed",
        definition=f"{SPEC_BASE}/Resource-lastUpdated",
    ),
]

# _include targets per type: "SourceType:param", optionally ":TargetType" (include_targets).
INCLUDES: dict[str, tuple[str, ...]] = {
    "CarePlan": ("subject", "patient", "based-on", "part-of", "instantiates-canonical"),
    "Observation": ("subject", "patient", "based-on", "has-member", "part-of", "focus"),
    "GuidanceResponse": ("subject", "patient", "result"),
    "Task": ("for", "patient", "focus", "based-on"),
    "ServiceRequest": ("subject", "patient", "based-on"),
}


@cache
def include_targets(resource_type: str, name: str) -> tuple[str, ...]:
    """The types `_include=Type:name:Target` may name: the parameter's own target, else what
    the R4 element may reference (the types stored here, where it may reference any)."""
    param = params_for(resource_type)[name]
    if param.targets:
        return param.targets
    model = get_fhir_model_class(resource_type)
    by_json_name = {info.alias or n: info for n, info in model.model_fields.items()}
    targets: list[str] = []
    for path in param.paths:
        info = by_json_name.get(path.split(".")[0])
        extra = info.json_schema_extra if info is not None else None
        found = extra.get("enum_reference_types") if isinstance(extra, dict) else None
        allowed = [str(t) for t in found] if isinstance(found, list) else []
        if not allowed or "Resource" in allowed:
            allowed = sorted(SEARCH_PARAMS)
        targets += [t for t in allowed if t not in targets]
    return tuple(targets)


@cache
def revinclude_sources(resource_type: str) -> tuple[str, ...]:
    """What `_revinclude` may name on a search of `resource_type`: every "Source:param" that
    `_include` supports on the source type and that may point at `resource_type`."""
    return tuple(
        f"{source}:{name}"
        for source in sorted(INCLUDES)
        for name in INCLUDES[source]
        if resource_type in include_targets(source, name)
    )


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """All search parameters of a type by name, the common ones included."""
    return {p.name: p for p in [*COMMON_PARAMS, *SEARCH_PARAMS.get(resource_type, [])]}


def register(resource_type: str, param: SearchParam) -> None:
    """Add a parameter that is not HL7's (the protocol's own, at wiring time). Idempotent for
    the same definition; another definition under a taken name is a programming error."""
    params = SEARCH_PARAMS.setdefault(resource_type, [])
    taken = next((p for p in params if p.name == param.name), None)
    if taken == param:
        return
    if taken is not None:
        raise ValueError(f"{resource_type} already has a search parameter {param.name!r}")
    params.append(param)
    include_targets.cache_clear()
    revinclude_sources.cache_clear()
