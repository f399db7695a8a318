"""openapi/openapi.json: committed, equal to what the app generates, valid OpenAPI 3.1,
lint-clean (@redocly/cli), typed (no untyped bodies), with stable operation ids."""

import json
import re
from typing import Any

from openapi_spec_validator import validate

from service.cli import openapi_text
from tests.openapi.support import OPENAPI, node_tools, run_bin


def _document() -> dict[str, Any]:
    return json.loads(OPENAPI.read_text(encoding="utf-8"))


def test_committed_document_is_current() -> None:
    assert OPENAPI.exists(), "openapi/openapi.json is missing: run `careplan openapi`"
    assert OPENAPI.read_text(encoding="utf-8") == openapi_text(), (
        "openapi/openapi.json is out of date: run `careplan openapi` and commit it"
    )


def test_valid_openapi_31() -> None:
    document = _document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if path.startswith("/fhir")
    ]


def test_every_fhir_body_and_error_is_typed() -> None:
    problems = []
    for path, method, op in _operations(_document()):
        if op["tags"] == ["authorization"]:
            continue  # OAuth 2.0, not FHIR: test_the_authorization_server_is_typed
        label = f"{method.upper()} {path} ({op.get('operationId')})"
        body = op.get("requestBody", {}).get("content", {})
        for media, content in body.items():
            if content.get("schema") in (None, {}, {"type": "object"}):
                problems.append(f"{label}: untyped request body {media}")
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                if "Error" not in response.get("$ref", ""):
                    problems.append(f"{label}: {status} is not an OperationOutcome")
            elif status != "204":
                schema = response.get("content", {}).get("application/fhir+json", {})
                if not schema.get("schema"):
                    problems.append(f"{label}: {status} has no typed body")
    assert not problems, "\n".join(problems)


def test_stable_operation_ids_and_tags() -> None:
    ops = {op["operationId"]: (path, method, op) for path, method, op in _operations(_document())}
    for expected in (
        "readObservation",
        "searchCarePlan",
        "createPatient",
        "updateCarePlan",
        "vreadGuidanceResponse",
        "transaction",
        "capabilities",
        "applyPlanDefinition",
        "submitSession",
        "evaluateCarePlan",
    ):
        assert expected in ops, expected
    assert ops["readObservation"][2]["tags"] == ["Observation"]
    created = ops["createPatient"][2]["responses"]["201"]
    assert {"ETag", "Location", "Last-Modified"} <= set(created["headers"])
    headers = {p["name"] for p in ops["updateCarePlan"][2]["parameters"] if p["in"] == "header"}
    assert {"If-Match", "Prefer"} <= headers
    headers = {p["name"] for p in ops["createPatient"][2]["parameters"] if p["in"] == "header"}
    assert {"If-None-Exist", "Prefer"} <= headers


def test_redocly_lint_clean() -> None:
    node_tools()
    output = run_bin(
        "redocly",
        "lint",
        str(OPENAPI),
        "--config",
        "redocly.yaml",
        "--format",
        "stylish",
        "--max-problems",
        "1000",
    )
    problems = re.findall(r"^\s+\d+:\d+\s+(?:warning|error)\s+.*$", output, re.MULTILINE)
    assert not problems, "\n".join(problems[:50])
    assert "Your API description is valid" in output, output[-3000:]


OPEN = {"capabilities", "token", "jwks", "smartConfiguration"}


def test_the_authorization_server_is_typed() -> None:
    ops = {op["operationId"]: op for _, _, op in _operations(_document())}
    schemas = {
        "token": {"200": "TokenResponse", "400": "OAuthError", "401": "OAuthError"},
        "jwks": {"200": "JsonWebKeySet"},
        "smartConfiguration": {"200": "SmartConfiguration"},
    }
    for operation_id, expected in schemas.items():
        responses = ops[operation_id]["responses"]
        for status, schema in expected.items():
            content = responses[status]["content"]["application/json"]
            assert content["schema"] == {"$ref": f"#/components/schemas/{schema}"}
        assert "security" not in ops[operation_id]


def test_every_protected_operation_declares_the_security_schemes() -> None:
    document = _document()
    schemes = document["components"]["securitySchemes"]
    assert schemes["smartBackendServices"]["type"] == "oauth2"
    flow = schemes["smartBackendServices"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/fhir/auth/token"
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    checked = 0
    for path, method, op in _operations(document):
        if op["operationId"] in OPEN:
            assert "security" not in op, path
            continue
        label = f"{method.upper()} {path}"
        (smart, bearer) = op["security"]
        assert set(smart) == {"smartBackendServices"} and bearer == {"bearerToken": []}, label
        assert set(smart["smartBackendServices"]) <= set(flow["scopes"]), label
        assert {"401", "403"} <= set(op["responses"]), label
        checked += 1
    assert checked > 150
    ops = {op["operationId"]: op for _, _, op in _operations(document)}
    assert ops["readPatient"]["security"][0] == {"smartBackendServices": ["system/Patient.r"]}
    assert ops["submitSession"]["security"][0] == {
        "smartBackendServices": ["system/CarePlan.u", "system/Observation.c"]
    }
