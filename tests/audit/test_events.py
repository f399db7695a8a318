"""The AuditEvent builder (service/audit/): BALP codes per interaction, outcomes, the caller
without its token, entities; each event it builds is valid R4 (independent validator)."""

import base64
from datetime import UTC, datetime

import pytest

from service.audit.events import (
    ACTIONS,
    JTI_PREFIX,
    SCOPE_EXTENSION,
    Caller,
    Circumstances,
    Happened,
    Interaction,
    audit_event,
    outcome_code,
)
from service.audit.interactions import interaction_for, raw_query
from service.audit.subjects import patients_of, queried_patients
from service.protocol.codes import CANONICAL_BASE

WHEN = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
CALLER = Caller(
    client_id="app-1",
    issuer="https://auth.example.org",
    scopes=("system/Observation.rs", "system/CarePlan.u"),
    token_id="b7c9",
    patient="Patient/p9",
)


def _event(code: str, status: int = 200, caller: Caller | None = CALLER, **kw) -> dict:
    facts = Circumstances(
        Interaction(code, "Observation", "o1"),
        server="https://careplan.example.org/fhir",
        caller=caller,
        address="10.1.2.3",
        request_id="req-1",
        query=kw.pop("query", None),
    )
    return audit_event(Happened(facts, status, WHEN, **kw))


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "0"),
        (201, "0"),
        (204, "0"),
        (401, "4"),
        (403, "4"),
        (404, "4"),
        (405, "4"),
        (422, "4"),
        (500, "8"),
        (503, "8"),
    ],
)
def test_outcome_follows_the_status(status, outcome):
    assert outcome_code(status) == outcome
    event = _event("read", status, description="why")
    assert event["outcome"] == outcome
    assert ("outcomeDesc" in event) == (status >= 400)


@pytest.mark.parametrize(
    ("code", "action", "client_role", "server_role"),
    [
        ("read", "R", "110152", "110153"),  # BALP Read: the client is the destination
        ("vread", "R", "110152", "110153"),
        ("history-instance", "R", "110152", "110153"),
        ("search-type", "E", "110153", "110152"),  # BALP Query: the client is the source
        ("create", "C", "110153", "110152"),
        ("update", "U", "110153", "110152"),
        ("delete", "D", "110150", "custodian"),  # BALP Delete: application and custodian
        ("transaction", "E", "110153", "110152"),
        ("operation", "E", "110153", "110152"),
    ],
)
def test_codes_of_each_interaction(code, action, client_role, server_role):
    event = _event(code)
    assert event["type"]["code"] == "rest"
    assert event["subtype"][0] == {
        "system": "http://hl7.org/fhir/restful-interaction",
        "code": code,
    }
    assert event["action"] == ACTIONS[code] == action
    client, server = event["agent"]
    assert client["type"]["coding"][0]["code"] == client_role
    assert client["type"]["coding"][-1]["code"] == "110150"  # BALP OAuth: the Application
    assert server["type"]["coding"][0]["code"] == server_role
    assert (client["requestor"], server["requestor"]) == (True, False)


def test_the_client_is_named_by_its_token_never_with_it():
    event = _event("read")
    client = event["agent"][0]
    assert client["who"] == {
        "identifier": {"system": "https://auth.example.org", "value": "app-1"},
        "display": "app-1",
    }
    assert client["policy"] == [f"{JTI_PREFIX}b7c9"]
    assert client["extension"] == [
        {"url": SCOPE_EXTENSION, "valueString": "system/Observation.rs system/CarePlan.u"}
    ]
    assert client["network"] == {"address": "10.1.2.3", "type": "2"}
    assert SCOPE_EXTENSION.startswith(CANONICAL_BASE + "/")
    # The token's patient context is a patient of the event.
    patients = [
        e["what"]["reference"] for e in event["entity"] if e.get("role", {}).get("code") == "1"
    ]
    assert patients == ["Patient/p9"]
    anonymous = _event("read", caller=None)["agent"][0]
    assert anonymous["who"] == {"display": "no verified access token"}
    assert "policy" not in anonymous and "extension" not in anonymous


def test_entities_resources_patients_query_request_id():
    event = _event(
        "search-type",
        query="Observation?patient=p1&code=72514-3",
        resources=("Observation/o1/_history/2",),
        patients=("Patient/p1", "Patient/p9", "Patient/p1"),
    )
    by_role = {}
    for entity in event["entity"]:
        by_role.setdefault(entity.get("role", {}).get("code"), []).append(entity)
    assert [e["what"]["reference"] for e in by_role["4"]] == ["Observation/o1/_history/2"]
    assert [e["what"]["reference"] for e in by_role["1"]] == ["Patient/p1", "Patient/p9"]
    (query,) = by_role["24"]
    assert base64.b64decode(query["query"]).decode() == "Observation?patient=p1&code=72514-3"
    (request,) = by_role[None]
    assert request == {
        "type": {
            "system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType",
            "code": "XrequestId",
        },
        "what": {"identifier": {"value": "req-1"}},
    }
    assert event["recorded"] == "2026-03-01T09:30:15.123Z"


def test_an_operation_and_a_batch_entry_add_to_the_subtype():
    facts = Circumstances(
        Interaction(
            "operation",
            "CarePlan",
            "c1",
            operation="evaluate",
            definition=f"{CANONICAL_BASE}/OperationDefinition/CarePlan-evaluate",
        ),
        server="https://careplan.example.org/fhir",
    )
    event = audit_event(Happened(facts, 200, WHEN))
    assert event["subtype"][1] == {
        "system": f"{CANONICAL_BASE}/OperationDefinition/CarePlan-evaluate",
        "code": "evaluate",
        "display": "$evaluate",
    }
    entry = Circumstances(Interaction("create", "Observation", in_batch=True), server="s")
    assert [c["code"] for c in audit_event(Happened(entry, 201, WHEN))["subtype"]] == [
        "create",
        "batch",
    ]


@pytest.mark.parametrize(
    ("method", "path", "code", "resource_type", "resource_id", "operation"),
    [
        ("GET", "Observation/o1", "read", "Observation", "o1", None),
        ("GET", "Observation/o1/_history/2", "vread", "Observation", "o1", None),
        ("GET", "Observation/o1/_history", "history-instance", "Observation", "o1", None),
        ("GET", "Observation/_history", "history-type", "Observation", None, None),
        ("GET", "_history", "history-system", None, None, None),
        ("GET", "Observation", "search-type", "Observation", None, None),
        ("POST", "Observation/_search", "search-type", "Observation", None, None),
        ("POST", "Observation", "create", "Observation", None, None),
        ("PUT", "Observation/o1", "update", "Observation", "o1", None),
        ("DELETE", "Observation/o1", "delete", "Observation", "o1", None),
        ("PATCH", "Observation/o1", "patch", "Observation", "o1", None),
        ("POST", "", "transaction", None, None, None),
        ("GET", "metadata", "capabilities", None, None, None),
        ("POST", "CarePlan/c1/$submit-session", "operation", "CarePlan", "c1", "submit-session"),
        ("GET", "PlanDefinition/$apply", "operation", "PlanDefinition", None, "apply"),
        ("GET", "Observation/bad id!", "read", "Observation", None, None),
        ("GET", "not-a-type/x", "operation", None, None, None),
    ],
)
def test_interaction_of_a_request(method, path, code, resource_type, resource_id, operation):
    interaction = interaction_for(method, path)
    assert (interaction.code, interaction.resource_type, interaction.resource_id) == (
        code,
        resource_type,
        resource_id,
    )
    assert interaction.operation == operation


def test_the_recorded_query_drops_credentials_only():
    assert raw_query("Observation", "patient=p1&code=a%7Cb") == "Observation?patient=p1&code=a%7Cb"
    assert raw_query("Observation", "", "patient=p1") == "Observation?patient=p1"
    assert raw_query("Observation") == "Observation"
    redacted = raw_query("Observation", "access_token=SECRET-1&patient=p1", "client_secret=S2")
    assert "SECRET" not in redacted and "S2" not in redacted
    assert redacted == (
        "Observation?access_token=%28removed%29&patient=p1&client_secret=%28removed%29"
    )


def test_patients_of_resources_and_queries():
    observation = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Patient/p2"}],
    }
    assert patients_of(observation) == ["Patient/p1"]
    assert patients_of({"resourceType": "Patient", "id": "p3"}) == ["Patient/p3"]
    elsewhere = {
        "resourceType": "Observation",
        "subject": {"reference": "https://x.org/Patient/p1"},
    }
    assert patients_of(elsewhere) == []
    assert patients_of({"resourceType": "PlanDefinition", "id": "pd"}) == []
    assert queried_patients(
        "Observation", [("patient", "p1,Patient/p2"), ("subject", "Patient/p3"), ("code", "x")]
    ) == ["Patient/p1", "Patient/p2", "Patient/p3"]
    assert queried_patients("Patient", [("_id", "p4")]) == ["Patient/p4"]
    assert queried_patients("Observation", [("_id", "o1")]) == []


def test_every_built_event_is_valid_r4(r4_validator):
    if r4_validator is None:
        pytest.skip("the independent validator needs Node.js")
    for code in ACTIONS:
        for status in (200, 404, 503):
            for caller in (CALLER, None):
                event = _event(
                    code,
                    status,
                    caller,
                    description="Observation/o1 is not known",
                    query="Observation?patient=p1",
                    resources=("Observation/o1/_history/1",),
                    patients=("Patient/p1",),
                )
                assert r4_validator.validate(event) == [], (code, status, event)
