"""Build one AuditEvent (FHIR R4) from a plain description of one interaction.

The shape follows IHE BALP (https://profiles.ihe.net/ITI/BALP/): the RESTful profiles Read,
Query, Create, Update and Delete with their Patient variants, and the OAuth access-token
pattern for the client:

- ``type`` audit-event-type ``rest``; ``subtype`` the FHIR interaction (restful-interaction),
  an operation adds a second coding: its OperationDefinition's url and code; a batch entry adds
  ``batch``. ``action``: C, R (read, vread, history), U, D, E (search, operation, transaction).
- ``outcome`` 0 when the answer was a success, 4 for a 4xx (a refused request too), 8 for a 5xx;
  ``outcomeDesc`` the OperationOutcome's text.
- ``agent``: the client (the requestor: Backend Services have no user) with the DICOM role
  BALP gives it for that interaction and ``110150 Application``; ``who`` the token's client id
  (identifier system: the token's issuer), ``network`` the address the request came from,
  ``policy`` the token's ``jti`` (``urn:ietf:params:oauth:jti:``), the granted scopes in an
  extension. Then this server, by its base URL.
- ``source``: this server. ``entity``: each resource read or written (its version), each
  patient concerned (role Patient), the raw search request base64-encoded (role Query), and
  the request's X-Request-ID.

It is never given the token itself, so it cannot put it in the event.
"""

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.fhir.dates import format_instant

Json = dict[str, Any]

SERVICE_NAME = "flexion-careplan"
# Written only by the service, never created, updated or deleted through the API.
RESOURCE_TYPE = "AuditEvent"
# The service's canonical base (service/protocol/codes.py CANONICAL_BASE; a test keeps them equal).
SCOPE_EXTENSION = "https://fhir.flexion-careplan.org/StructureDefinition/audit-oauth-scope"
JTI_PREFIX = "urn:ietf:params:oauth:jti:"

_RESTFUL = "http://hl7.org/fhir/restful-interaction"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "Restful Operation",
}
_SOURCE_ROLE = {"system": _DCM, "code": "110153", "display": "Source Role ID"}
_DESTINATION_ROLE = {"system": _DCM, "code": "110152", "display": "Destination Role ID"}
_APPLICATION = {"system": _DCM, "code": "110150", "display": "Application"}
_CUSTODIAN = {
    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
    "code": "custodian",
    "display": "Custodian",
}
_SERVER_SOURCE_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
    "code": "4",
    "display": "Application Server",
}
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_PERSON = {"system": _ENTITY_TYPE, "code": "1", "display": "Person"}
_SYSTEM_OBJECT = {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"}
_ROLE_PATIENT = {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"}
_ROLE_RESOURCE = {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
_ROLE_QUERY = {"system": _OBJECT_ROLE, "code": "24", "display": "Query"}
_REQUEST_ID = {
    "system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType",
    "code": "XrequestId",
}

ACTIONS = {
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "search-type": "E",
    "search-system": "E",
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
    "capabilities": "R",
}
# BALP names the client the data's destination when it reads, its source when it sends.
_READS = {"read", "vread", "history-instance", "history-type", "history-system", "capabilities"}
_SERVER_ROLES = {"delete": _CUSTODIAN}
_DESCRIPTION_LIMIT = 1024


@dataclass(frozen=True)
class Caller:
    """The client a verified access token names; never the token itself."""

    client_id: str
    issuer: str
    scopes: tuple[str, ...] = ()
    token_id: str | None = None  # the token's jti
    patient: str | None = None  # the token's patient context, "Patient/<id>"


@dataclass(frozen=True)
class Interaction:
    """What was asked: a restful-interaction code, on which type or resource."""

    code: str
    resource_type: str | None = None
    resource_id: str | None = None
    operation: str | None = None  # an operation's OperationDefinition.code, e.g. submit-session
    definition: str | None = None  # that OperationDefinition's canonical url
    in_batch: bool = False  # an entry of a batch Bundle


@dataclass(frozen=True)
class Circumstances:
    """Who asked what, from where: everything about a request but its outcome."""

    interaction: Interaction
    server: str  # this server's FHIR base URL
    caller: Caller | None = None  # None: no verified token (the service runs open, or refused)
    address: str | None = None  # the client's network address
    request_id: str | None = None
    query: str | None = None  # a search's raw request (path and parameters)


@dataclass(frozen=True)
class Happened:
    """One interaction and its outcome."""

    circumstances: Circumstances
    status: int  # the HTTP status of the answer
    recorded: datetime
    description: str | None = None  # what went wrong (the OperationOutcome's text)
    resources: tuple[str, ...] = ()  # "Type/id" or "Type/id/_history/version"
    patients: tuple[str, ...] = ()  # "Patient/id"


def outcome_code(status: int) -> str:
    """audit-event-outcome: 0 success, 4 minor failure (the client's: 4xx), 8 serious (5xx)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def audit_event(happened: Happened) -> Json:
    """The AuditEvent resource (no id or meta: the store gives them)."""
    facts = happened.circumstances
    interaction = facts.interaction
    event: Json = {
        "resourceType": "AuditEvent",
        "type": _TYPE,
        "subtype": _subtype(interaction),
        "action": ACTIONS.get(interaction.code, "E"),
        "recorded": format_instant(happened.recorded),
        "outcome": outcome_code(happened.status),
    }
    if happened.description and happened.status >= 400:
        event["outcomeDesc"] = happened.description[:_DESCRIPTION_LIMIT]
    event["agent"] = [_client(facts), _server(facts)]
    event["source"] = {
        "site": facts.server,
        "observer": {"display": SERVICE_NAME},
        "type": [_SERVER_SOURCE_TYPE],
    }
    entities = _entities(happened)
    if entities:
        event["entity"] = entities
    return event


def _subtype(interaction: Interaction) -> list[Json]:
    codings: list[Json] = [{"system": _RESTFUL, "code": interaction.code}]
    if interaction.operation:
        operation: Json = {"code": interaction.operation, "display": f"${interaction.operation}"}
        if interaction.definition:
            operation = {"system": interaction.definition, **operation}
        codings.append(operation)
    if interaction.in_batch:
        codings.append({"system": _RESTFUL, "code": "batch"})
    return codings


def _client(facts: Circumstances) -> Json:
    code = facts.interaction.code
    if code == "delete":  # BALP Delete: the client is the Application, the server custodian
        roles = [_APPLICATION]
    else:
        roles = [_DESTINATION_ROLE if code in _READS else _SOURCE_ROLE, _APPLICATION]
    agent: Json = {"type": {"coding": roles}}
    caller = facts.caller
    if caller is not None:
        if caller.scopes:
            agent["extension"] = [{"url": SCOPE_EXTENSION, "valueString": " ".join(caller.scopes)}]
        agent["who"] = {
            "identifier": {"system": caller.issuer, "value": caller.client_id},
            "display": caller.client_id,
        }
    else:
        agent["who"] = {"display": "no verified access token"}
    agent["requestor"] = True
    if caller is not None and caller.token_id:
        agent["policy"] = [JTI_PREFIX + caller.token_id]
    if facts.address:
        agent["network"] = {"address": facts.address, "type": _address_type(facts.address)}
    return agent


def _server(facts: Circumstances) -> Json:
    code = facts.interaction.code
    role = _SERVER_ROLES.get(code) or (_SOURCE_ROLE if code in _READS else _DESTINATION_ROLE)
    return {
        "type": {"coding": [role]},
        "who": {"identifier": {"system": "urn:ietf:rfc:3986", "value": facts.server}},
        "requestor": False,
        "network": {"address": facts.server, "type": "5"},
    }


def _address_type(address: str) -> str:
    """network-type: 2 an IP address (v4 or v6), 1 a machine name."""
    if ":" in address or address.replace(".", "").isdigit():
        return "2"
    return "1"


def _entities(happened: Happened) -> list[Json]:
    entities: list[Json] = [
        {"what": {"reference": reference}, "type": _SYSTEM_OBJECT, "role": _ROLE_RESOURCE}
        for reference in happened.resources
    ]
    facts = happened.circumstances
    patients = list(happened.patients)
    if facts.caller is not None and facts.caller.patient:
        patients.append(facts.caller.patient)
    for patient in dict.fromkeys(patients):  # once each, in order
        entities.append({"what": {"reference": patient}, "type": _PERSON, "role": _ROLE_PATIENT})
    if facts.query is not None:
        encoded = base64.b64encode(facts.query.encode("utf-8")).decode("ascii")
        entities.append({"type": _SYSTEM_OBJECT, "role": _ROLE_QUERY, "query": encoded})
    if facts.request_id:
        entities.append({"type": _REQUEST_ID, "what": {"identifier": {"value": facts.request_id}}})
    return entities
