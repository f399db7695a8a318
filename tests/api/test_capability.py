"""/fhir/metadata: an R4 CapabilityStatement that declares exactly what is routed, and works."""

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI

from service.api import capability
from service.api.capability import api_routes
from service.api.rest import type_router
from service.fhir.search_params import INCLUDES, params_for
from service.settings import Settings
from service.usecases.authorization import AuthPolicy
from tests.conftest import FhirClient

# The smallest valid resource of each type, for exercising every declared interaction.
MINIMAL: dict[str, dict[str, Any]] = {
    "Patient": {},
    "PlanDefinition": {"status": "draft"},
    "ActivityDefinition": {"status": "draft"},
    "CodeSystem": {"status": "draft", "content": "not-present"},
    "Questionnaire": {"status": "draft"},
    "QuestionnaireResponse": {"status": "completed"},
    "CarePlan": {"status": "draft", "intent": "proposal", "subject": {"reference": "Patient/p"}},
    "ServiceRequest": {
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": "Patient/p"},
    },
    "Observation": {"status": "final", "code": {"text": "probe"}},
    "Condition": {"subject": {"reference": "Patient/p"}},
    "Procedure": {"status": "completed", "subject": {"reference": "Patient/p"}},
    "GuidanceResponse": {"moduleUri": "http://example.org/module", "status": "success"},
    "Task": {"status": "draft", "intent": "proposal"},
    "DetectedIssue": {"status": "final"},
    "CommunicationRequest": {"status": "draft"},
    "Provenance": {
        "target": [{"reference": "Patient/p"}],
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"who": {"display": "probe"}}],
    },
    "OperationDefinition": {
        "name": "Probe",
        "status": "draft",
        "kind": "operation",
        "code": "probe",
        "system": False,
        "type": False,
        "instance": True,
    },
    "SearchParameter": {
        "url": "http://example.org/SearchParameter/probe",
        "name": "probe",
        "status": "draft",
        "description": "probe",
        "code": "probe",
        "base": ["Patient"],
        "type": "token",
    },
    "AuditEvent": {
        "type": {"code": "rest"},
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"requestor": True, "who": {"display": "probe"}}],
        "source": {"observer": {"display": "probe"}},
    },
    # Off: a probe that never calls its endpoint (allowed by the settings below).
    "Subscription": {
        "status": "off",
        "reason": "probe",
        "criteria": "https://fhir.flexion-careplan.org/SubscriptionTopic/decision-made",
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://scheduling.example.org/hooks/probe",
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                        "backport-payload-content",
                        "valueCode": "id-only",
                    }
                ]
            },
            "extension": [
                {
                    "url": "https://fhir.flexion-careplan.org/StructureDefinition/"
                    "subscription-signing-secret",
                    "valueString": "probe-secret-probe-secret-probe-secret",
                }
            ],
        },
    },
}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        db_connect_retries=0,
        subscription_endpoints="https://scheduling.example.org/hooks/",
    )


SAMPLE_VALUES = {
    "token": "x",
    "string": "x",
    "reference": "Patient/x",
    "date": "ge2026-01-01",
    "quantity": "gt5",
    "uri": "http://example.org/x",
    "number": "5",
}


def _statement(client) -> dict[str, Any]:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    return response.json()


def _routed(app) -> dict[str, set[str]]:
    """type -> interactions, read off the app's route names (fhir:<interaction>:<type>)."""
    routed: dict[str, set[str]] = {}
    for route in api_routes(list(app.routes)):
        parts = route.name.split(":")
        if parts[0] == "fhir" and len(parts) == 3 and parts[1] != "op":
            routed.setdefault(parts[2], set()).add(parts[1])
    return routed


def test_statement_is_r4(client):
    cs = _statement(client)
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    assert cs["status"] == "active"
    assert "json" in cs["format"] or "application/fhir+json" in cs["format"]
    assert cs["rest"][0]["mode"] == "server"
    assert cs["implementation"]["url"] == "http://testserver/fhir"
    as_json = client.get("/fhir/metadata", headers={"accept": "application/json"})
    assert as_json.headers["content-type"].startswith("application/json")


def test_declares_exactly_what_is_routed(client, app):
    rest = _statement(client)["rest"][0]
    routed = _routed(app)
    declared = {r["type"]: {i["code"] for i in r["interaction"]} for r in rest["resource"]}
    assert set(declared) == set(routed)
    for resource_type, interactions in declared.items():
        expected = {i for i in routed[resource_type] if i != "search-type-post"}
        assert interactions == expected, resource_type
    for entry in rest["resource"]:
        names = [p["name"] for p in entry.get("searchParam", [])]
        assert len(names) == len(set(names)), entry["type"]
        assert set(names) == set(params_for(entry["type"])), entry["type"]
        assert entry.get("searchInclude", []) == [
            f"{entry['type']}:{p}" for p in INCLUDES.get(entry["type"], ())
        ]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system"}
    # Nothing that is not routed: no patch, no conditional update/delete.
    for entry in rest["resource"]:
        assert "patch" not in {i["code"] for i in entry["interaction"]}
        assert entry["conditionalUpdate"] is False
        assert entry["conditionalDelete"] == "not-supported"


def test_every_declared_interaction_answers(client):
    rest = _statement(client)["rest"][0]
    for entry in rest["resource"]:
        resource_type = entry["type"]
        codes = {i["code"] for i in entry["interaction"]}
        if codes & {"create", "update"}:
            assert resource_type in MINIMAL, f"add a minimal {resource_type} to MINIMAL"
        body = {"resourceType": resource_type, **MINIMAL.get(resource_type, {})}
        rid = f"cap-{resource_type.lower()}"
        if_match = {}
        if "update" not in codes:  # AuditEvent: only the service writes it; read one it wrote
            found = client.get(f"/fhir/{resource_type}", params={"_count": "1"}).json()
            rid = found["entry"][0]["resource"]["id"]
        elif not entry["updateCreate"]:
            # versioned-update: create with POST, then update naming the version read.
            assert entry["versioning"] == "versioned-update", resource_type
            created = client.post(f"/fhir/{resource_type}", json=body)
            assert created.status_code == 201, (resource_type, created.text)
            rid = created.json()["id"]
            if_match = {"If-Match": created.headers["ETag"]}
        calls = {
            "create": lambda b=body, t=resource_type: client.post(f"/fhir/{t}", json=b),
            "update": lambda b=body, t=resource_type, i=rid, h=if_match: client.put(
                f"/fhir/{t}/{i}", json={**b, "id": i}, headers=h
            ),
            "read": lambda t=resource_type, i=rid: client.get(f"/fhir/{t}/{i}"),
            "vread": lambda t=resource_type, i=rid: client.get(f"/fhir/{t}/{i}/_history/1"),
            "history-instance": lambda t=resource_type, i=rid: client.get(
                f"/fhir/{t}/{i}/_history"
            ),
            "history-type": lambda t=resource_type: client.get(f"/fhir/{t}/_history"),
            "search-type": lambda t=resource_type, i=rid: client.get(
                f"/fhir/{t}", params={"_id": i}
            ),
            "delete": lambda t=resource_type, i=rid: client.delete(f"/fhir/{t}/{i}"),
        }
        # update first (it creates the probe resource with a known id), delete last
        order = ["update", "create", "read", "vread", "history-instance", "history-type"]
        order += ["search-type", "delete"]
        for code in [c for c in order if c in codes]:
            response = calls[code]()
            assert response.status_code < 300, (resource_type, code, response.text)
            if code == "search-type":
                assert response.json()["total"] == 1, (resource_type, response.text)
        assert codes <= set(order), codes - set(order)


def test_every_declared_search_param_works(client):
    rest = _statement(client)["rest"][0]
    for entry in rest["resource"]:
        resource_type = entry["type"]
        for param in entry.get("searchParam", []):
            value = SAMPLE_VALUES[param["type"]]
            for params in ({param["name"]: value}, {f"{param['name']}:missing": "true"}):
                response = client.get(f"/fhir/{resource_type}", params=params)
                assert response.status_code == 200, (resource_type, params, response.text)
            posted = client.post(
                f"/fhir/{resource_type}/_search",
                data={param["name"]: value},
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert posted.status_code == 200, (resource_type, param["name"], posted.text)
            strict = client.get(
                f"/fhir/{resource_type}",
                params={param["name"]: value},
                headers={"Prefer": "handling=strict"},
            )
            assert strict.status_code == 200, (resource_type, param["name"], strict.text)
        for include in entry.get("searchInclude", []):
            response = client.get(f"/fhir/{resource_type}", params={"_include": include})
            assert response.status_code == 200, (include, response.text)


def test_declared_system_interactions_and_operations_answer(client):
    rest = _statement(client)["rest"][0]
    for kind in ("transaction", "batch"):
        response = client.post("/fhir", json={"resourceType": "Bundle", "type": kind})
        assert response.status_code == 200
    assert client.get("/fhir/_history").status_code == 200
    for entry in rest["resource"]:
        for operation in entry.get("operation", []):
            for method in ("POST",):
                response = client.request(
                    method,
                    f"/fhir/{entry['type']}/unknown-id/${operation['name']}",
                    json={"resourceType": "Parameters"},
                )
                assert response.status_code != 405, (operation, response.text)
                # The route exists: any 404 is about the resource, not the URL.
                assert "No route" not in response.text, (operation, response.text)


def test_undeclared_is_not_routed(client):
    cs = _statement(client)
    declared = {r["type"] for r in cs["rest"][0]["resource"]}
    for resource_type in ("Encounter", "Medication", "Bogus"):
        assert resource_type not in declared
        assert client.get(f"/fhir/{resource_type}").status_code == 404
    assert client.patch("/fhir/Patient/x", json={}).status_code == 405


@pytest.fixture
def partial_app() -> FastAPI:
    """An app with only Patient routes, minus delete: its statement must follow."""
    app = FastAPI()
    app.state.settings = Settings(database_url="sqlite://")
    # Open (no store behind it to keep clients in): the statement then has no security.
    app.state.authorization = SimpleNamespace(policy=AuthPolicy("off", "127.0.0.1"))
    router = type_router("Patient")
    router.routes[:] = [r for r in router.routes if getattr(r, "name", "") != "fhir:delete:Patient"]
    app.include_router(capability.router)
    app.include_router(router)
    return app


def test_statement_follows_the_routes(partial_app, r4_validator):
    with FhirClient(partial_app) as client:
        client.validator = r4_validator
        rest = client.get("/fhir/metadata").json()["rest"][0]
    assert [r["type"] for r in rest["resource"]] == ["Patient"]
    codes = {i["code"] for i in rest["resource"][0]["interaction"]}
    assert "delete" not in codes
    assert {"read", "vread", "update", "create", "search-type"} <= codes
    assert rest["interaction"] == []  # no system router mounted
    assert "security" not in rest
