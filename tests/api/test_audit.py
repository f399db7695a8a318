"""The audit trail through HTTP: one AuditEvent per interaction, searchable, never written
through the API, never holding a token; every one valid R4 (independent validator)."""

import base64
import json
from typing import Any

import pytest
from fastapi import Request
from fastapi.responses import Response

from service.api.audit import record_refusal
from service.fhir.errors import fhir_error
from tests.api.helpers import audit_events, pain_observation, patient, store_snapshot
from tests.api.scenario import PLAN, day, eligible_patient, enrol, submit
from tests.conftest import FhirClient
from tests.protocol import builders as b

RESTFUL = "http://hl7.org/fhir/restful-interaction"
ISSUER = "https://issuer.example.org"
CLIENT = "scheduling-app-7"


def _new_events(app: Any, before: int) -> list[dict[str, Any]]:
    return audit_events(app)[before:]


def _one_event(app: Any, before: int) -> dict[str, Any]:
    events = _new_events(app, before)
    assert len(events) == 1, [e.get("subtype") for e in events]
    return events[0]


def _subtypes(event: dict[str, Any]) -> list[str]:
    return [c["code"] for c in event["subtype"] if c.get("system") == RESTFUL]


def _references(event: dict[str, Any], role: str) -> list[str]:
    return [
        e["what"]["reference"]
        for e in event.get("entity", [])
        if e.get("role", {}).get("code") == role and "reference" in e.get("what", {})
    ]


def _query(event: dict[str, Any]) -> str | None:
    queries = [e["query"] for e in event.get("entity", []) if "query" in e]
    return base64.b64decode(queries[0]).decode() if queries else None


def _check(event: dict[str, Any], subtype: str, action: str, outcome: str) -> None:
    assert _subtypes(event)[0] == subtype
    assert event["action"] == action
    assert event["outcome"] == outcome
    assert event["type"]["code"] == "rest"


@pytest.fixture
def pid(client: Any) -> str:
    return str(client.post("/fhir/Patient", json=patient()).json()["id"])


def test_each_interaction_leaves_one_event(client, app, pid, r4_validator):
    created = client.post("/fhir/Observation", json=pain_observation(f"Patient/{pid}", 3))
    assert created.status_code == 201
    oid = created.json()["id"]
    start = len(audit_events(app))
    steps: list[tuple[str, Any, str, str, str]] = [
        ("read", lambda: client.get(f"/fhir/Observation/{oid}"), "read", "R", "0"),
        ("vread", lambda: client.get(f"/fhir/Observation/{oid}/_history/1"), "vread", "R", "0"),
        (
            "search",
            lambda: client.get("/fhir/Observation", params={"patient": pid}),
            "search-type",
            "E",
            "0",
        ),
        (
            "search-post",
            lambda: client.post(
                "/fhir/Observation/_search",
                data={"patient": pid},
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            "search-type",
            "E",
            "0",
        ),
        (
            "create",
            lambda: client.post("/fhir/Observation", json=pain_observation(f"Patient/{pid}", 4)),
            "create",
            "C",
            "0",
        ),
        (
            "update",
            lambda: client.put(
                f"/fhir/Observation/{oid}",
                json={**pain_observation(f"Patient/{pid}", 5), "id": oid},
            ),
            "update",
            "U",
            "0",
        ),
        (
            "history",
            lambda: client.get(f"/fhir/Observation/{oid}/_history"),
            "history-instance",
            "R",
            "0",
        ),
        (
            "type history",
            lambda: client.get("/fhir/Observation/_history"),
            "history-type",
            "R",
            "0",
        ),
        ("delete", lambda: client.delete(f"/fhir/Observation/{oid}"), "delete", "D", "0"),
        ("read deleted", lambda: client.get(f"/fhir/Observation/{oid}"), "read", "R", "4"),
    ]
    for name, call, subtype, action, outcome in steps:
        before = len(audit_events(app))
        response = call()
        assert response.status_code < 500, (name, response.text)
        event = _one_event(app, before)
        _check(event, subtype, action, outcome)
        # Every one about this patient's data names the patient (BALP Patient* profiles).
        if name != "read deleted":
            assert f"Patient/{pid}" in _references(event, "1"), name
    events = audit_events(app)[start:]
    read, vread, search, posted, create, update, *_ = events
    assert _references(read, "4") == [f"Observation/{oid}/_history/1"]
    assert _references(vread, "4") == [f"Observation/{oid}/_history/1"]
    assert _query(search) == f"Observation?patient={pid}"
    assert _query(posted) == f"Observation/_search?patient={pid}"
    assert _references(update, "4") == [f"Observation/{oid}/_history/2"]
    assert _references(events[8], "4") == [f"Observation/{oid}/_history/3"]  # the deletion
    assert events[9]["outcomeDesc"] == f"Observation/{oid} has been deleted"
    # The client reads (BALP Read: destination) or sends (Create: source); delete: custodian.
    assert read["agent"][0]["type"]["coding"][0]["code"] == "110152"
    assert create["agent"][0]["type"]["coding"][0]["code"] == "110153"
    assert events[8]["agent"][1]["type"]["coding"][0]["code"] == "custodian"
    _validate_all(app, r4_validator)


def test_transaction_and_batch(client, app, pid, r4_validator):
    before = len(audit_events(app))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:9d1b1f0e-0000-4000-8000-000000000001",
                "resource": pain_observation(f"Patient/{pid}", 2),
                "request": {"method": "POST", "url": "Observation"},
            },
            {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        ],
    }
    answer = client.post("/fhir", json=bundle)
    assert answer.status_code == 200, answer.text
    event = _one_event(app, before)
    _check(event, "transaction", "E", "0")
    created = answer.json()["entry"][0]["response"]["location"]
    assert _references(event, "4") == [created, f"Patient/{pid}/_history/1"]
    assert _references(event, "1") == [f"Patient/{pid}"]

    # A batch: an event per entry, each with its own outcome (the second entry fails alone).
    before = len(audit_events(app))
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": pain_observation(f"Patient/{pid}", 1),
                "request": {"method": "POST", "url": "Observation"},
            },
            {"request": {"method": "GET", "url": "Observation/missing"}},
        ],
    }
    assert client.post("/fhir", json=batch).status_code == 200
    first, second = _new_events(app, before)
    _check(first, "create", "C", "0")
    _check(second, "read", "R", "4")
    assert _subtypes(first)[1:] == _subtypes(second)[1:] == ["batch"]
    assert second["outcomeDesc"] == "Observation/missing is not known"
    _validate_all(app, r4_validator)


def test_operations(client, app, r4_validator):
    eligible_patient(client, day(0))
    eligible_patient(client)
    before = len(audit_events(app))
    applied = client.get(f"{PLAN}/$apply", params={"subject": f"Patient/{b.PATIENT_ID}"})
    assert applied.status_code == 200
    event = _one_event(app, before)
    _check(event, "operation", "E", "0")
    operation = event["subtype"][1]
    assert (operation["code"], operation["display"]) == ("apply", "$apply")
    assert operation["system"].endswith("/OperationDefinition/PlanDefinition-apply")
    assert _references(event, "1") == [f"Patient/{b.PATIENT_ID}"]
    assert _references(event, "4")[0].startswith("PlanDefinition/flexion-in-lying-protocol/")

    plan_id = enrol(client)
    before = len(audit_events(app))
    decided = submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    assert decided.status_code == 200, decided.text
    event = _one_event(app, before)
    _check(event, "operation", "E", "0")
    assert event["subtype"][1]["code"] == "submit-session"
    touched = _references(event, "4")
    assert any(r.startswith(f"CarePlan/{plan_id}/_history/") for r in touched)
    assert any(r.startswith("GuidanceResponse/") for r in touched)
    assert _references(event, "1") == [f"Patient/{b.PATIENT_ID}"]

    before = len(audit_events(app))
    evaluated = client.post(f"/fhir/CarePlan/{plan_id}/$evaluate")
    assert evaluated.status_code == 200, evaluated.text
    event = _one_event(app, before)
    _check(event, "operation", "E", "0")
    assert event["subtype"][1]["code"] == "evaluate"
    _validate_all(app, r4_validator)


def test_a_failed_create_leaves_its_event_and_nothing_else(client, app, pid):
    before_rows = store_snapshot(app)
    before = len(audit_events(app))
    bad = client.post("/fhir/Observation", json=pain_observation(f"Patient/{pid}", 11))
    assert bad.status_code == 422, bad.text
    assert store_snapshot(app) == before_rows
    event = _one_event(app, before)
    _check(event, "create", "C", "4")
    assert event["outcomeDesc"] == bad.json()["issue"][0]["diagnostics"]
    assert _references(event, "4") == []


def test_a_server_fault_is_a_serious_failure(app, client):
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    app.add_api_route("/fhir/Observation/{id}/$fault-probe", broken, methods=["GET"])
    before = len(audit_events(app))
    # A second client on the started app (no second start-up) that answers the fault as the
    # server would, instead of raising it into the test.
    faulty = FhirClient(app, raise_server_exceptions=False)
    response = faulty.get("/fhir/Observation/x2/$fault-probe")
    assert response.status_code == 500
    event = _one_event(app, before)
    _check(event, "operation", "E", "8")
    assert event["outcomeDesc"] == "Internal server error"  # never the exception's text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/fhir/AuditEvent", {"resourceType": "AuditEvent"}),
        ("PUT", "/fhir/AuditEvent/{id}", None),
        ("DELETE", "/fhir/AuditEvent/{id}", None),
    ],
)
def test_the_api_never_writes_an_audit_event(client, app, pid, method, path, body):
    existing = audit_events(app)[0]
    before = audit_events(app)
    snapshot = store_snapshot(app)
    target = path.format(id=existing["id"])
    response = client.request(method, target, json=body or {**existing, "action": "D"})
    assert response.status_code == 405, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    after = audit_events(app)
    assert after[: len(before)] == before  # none changed, none gone
    assert store_snapshot(app) == snapshot
    # Its own event records the refused attempt.
    assert len(after) == len(before) + 1 and after[-1]["outcome"] == "4"


def test_bundles_cannot_write_audit_events(client, app, pid):
    existing = audit_events(app)[0]
    entries = [
        {
            "resource": {**existing, "action": "D"},
            "request": {"method": "POST", "url": "AuditEvent"},
        },
        {"resource": existing, "request": {"method": "PUT", "url": f"AuditEvent/{existing['id']}"}},
        {"request": {"method": "DELETE", "url": f"AuditEvent/{existing['id']}"}},
    ]
    for entry in entries:
        before = audit_events(app)
        transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        answer = client.post("/fhir", json=transaction)
        assert answer.status_code == 405, answer.text
        assert audit_events(app)[: len(before)] == before
        batch = client.post("/fhir", json={**transaction, "type": "batch"})
        assert batch.json()["entry"][0]["response"]["status"] == "405 Method Not Allowed"
        assert audit_events(app)[: len(before)] == before
    assert client.get(f"/fhir/AuditEvent/{existing['id']}").json() == existing


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_events_name_the_verified_client_and_never_the_token(client, app, pid):
    scope = "system/Patient.r system/Observation.crs system/AuditEvent.rs"
    client.tokens.register(CLIENT, scope)
    token = client.tokens.token(scope, client_id=CLIENT)
    claims = _claims(token)
    headers = {"authorization": f"Bearer {token}"}
    client.get(f"/fhir/Patient/{pid}", headers=headers)
    client.get("/fhir/Observation", params={"access_token": token, "patient": pid}, headers=headers)
    client.post("/fhir/Observation", json=pain_observation(f"Patient/{pid}", 3), headers=headers)
    client.get("/fhir/Observation/missing", headers=headers)
    events = [
        e
        for e in audit_events(app)
        if any(a["who"].get("display") == CLIENT for a in e.get("agent", []))
    ]
    assert len(events) == 4
    for event in events:
        text = json.dumps(event)
        queries = [
            base64.b64decode(e["query"]).decode() for e in event.get("entity", []) if "query" in e
        ]
        for found in [text, *queries]:
            assert token not in found and token.split(".")[2] not in found
    client_agent = events[0]["agent"][0]
    assert client_agent["who"] == {
        "identifier": {"system": claims["iss"], "value": CLIENT},
        "display": CLIENT,
    }
    assert client_agent["requestor"] is True
    assert client_agent["policy"] == [f"urn:ietf:params:oauth:jti:{claims['jti']}"]
    assert client_agent["extension"][0]["valueString"] == scope
    assert client_agent["network"] == {"address": "testclient", "type": "1"}
    assert _query(events[1]) == f"Observation?access_token=%28removed%29&patient={pid}"

    agent = f"{claims['iss']}|{CLIENT}"
    found = client.get("/fhir/AuditEvent", params={"agent:identifier": agent})
    assert found.json()["total"] == len(events)
    other = client.get("/fhir/AuditEvent", params={"agent:identifier": f"{ISSUER}|someone-else"})
    assert other.json()["total"] == 0


def test_search_the_trail(client, app, pid):
    other = client.post("/fhir/Patient", json=patient("Other", "2")).json()["id"]
    oid = client.post("/fhir/Observation", json=pain_observation(f"Patient/{pid}", 3)).json()["id"]
    client.get(f"/fhir/Observation/{oid}", headers={"x-request-id": "trace-read-42"})
    client.get("/fhir/Observation/missing")
    events = audit_events(app)

    known = {e["id"] for e in events}

    def ids(**params: str) -> set[str]:
        """The matches among `events` (each search stores its own event, newer than these)."""
        bundle = client.get("/fhir/AuditEvent", params={"_count": "500", **params}).json()
        return {e["resource"]["id"] for e in bundle.get("entry", [])} & known

    def expected(test: Any) -> set[str]:
        return {e["id"] for e in events if test(e)}

    patient_events = expected(lambda e: f"Patient/{pid}" in _references(e, "1"))
    assert len(patient_events) == 3  # the Patient's create, the Observation's create and read
    assert ids(patient=pid) == ids(patient=f"Patient/{pid}") == patient_events
    assert ids(patient=other) == expected(lambda e: f"Patient/{other}" in _references(e, "1"))
    assert ids(entity=f"Observation/{oid}") == expected(
        lambda e: any(r.startswith(f"Observation/{oid}") for r in _references(e, "4"))
    )
    assert ids(entity="Observation/missing") == {events[-1]["id"]}
    # The X-Request-ID of a request (in its log lines too) finds its event.
    assert ids(**{"entity:identifier": "trace-read-42"}) == {events[-2]["id"]}
    assert ids(outcome="4") == {events[-1]["id"]}
    assert ids(outcome="0") == {e["id"] for e in events[:-1]}
    rest = "http://terminology.hl7.org/CodeSystem/audit-event-type|rest"
    assert ids(type=rest) == ids(type="rest") == {e["id"] for e in events}
    assert ids(subtype="create", action="C") == expected(lambda e: e["action"] == "C")
    # date: recorded; the last event is no earlier than any other
    last = events[-1]["recorded"]
    assert events[-1]["id"] in ids(date=f"ge{last}")
    assert ids(date="lt2000-01-01") == set()
    assert ids(date=f"le{last}") >= {e["id"] for e in events}
    # agent: without a token the service runs open; the event names no client identifier.
    assert ids(**{"agent:identifier": "anyone"}) == set()


def test_a_refusal_is_recorded_once(app, client):
    """record_refusal (for the token check) stores the refusal's event, and the error
    answer that follows does not store a second one."""

    async def refused(request: Request) -> Response:
        await record_refusal(request, 401, "no bearer token")
        raise fhir_error(401, "login", "A bearer token is required")

    app.add_api_route("/fhir/Observation/{id}/$refusal-probe", refused, methods=["GET"])
    before = len(audit_events(app))
    response = client.get("/fhir/Observation/x1/$refusal-probe")
    assert response.status_code == 401
    event = _one_event(app, before)
    _check(event, "operation", "E", "4")
    assert event["outcomeDesc"] == "no bearer token"
    assert event["agent"][0]["who"] == {"display": "no verified access token"}
    assert _references(event, "4") == ["Observation/x1"]


def _validate_all(app: Any, r4_validator: Any) -> None:
    """Every stored AuditEvent is valid R4 (what the API returns is checked by FhirClient)."""
    if r4_validator is None:
        return
    for event in audit_events(app):
        assert r4_validator.validate(event) == [], event


def test_a_token_without_the_scope_is_refused_and_audited(client, app, pid):
    scope = "system/Patient.r"
    client.tokens.register("narrow-reader", scope)
    token = client.tokens.token(scope, client_id="narrow-reader")
    before = len(audit_events(app))
    refused = client.get("/fhir/Observation", headers={"authorization": f"Bearer {token}"})
    assert refused.status_code == 403
    [event] = audit_events(app)[before:]
    assert event["outcome"] == "4"
    assert event["agent"][0]["who"]["display"] == "narrow-reader"
    assert _subtypes(event) == ["search-type"]
    assert token not in json.dumps(event)
