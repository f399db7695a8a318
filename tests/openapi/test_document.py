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
