"""The compartment table against its source: CompartmentDefinition/patient 4.0.1 and the
search parameters it names, read from the official package hl7.fhir.r4.examples@4.0.1."""

import json
import re
from typing import Any

import pytest

from service.auth.compartment import R4_PATIENT_COMPARTMENT
from tests.support.node import NODE_DIR, ensure_node_modules
from tests.support.r4_examples import EXAMPLES_DIR

pytestmark = pytest.mark.node

STORED_TYPES = {
    "Patient",
    "CarePlan",
    "ServiceRequest",
    "Observation",
    "Condition",
    "Procedure",
    "GuidanceResponse",
    "Task",
    "DetectedIssue",
    "CommunicationRequest",
    "Provenance",
    "QuestionnaireResponse",
    "AuditEvent",
    "Subscription",
}


def _load(name: str) -> dict[str, Any]:
    ensure_node_modules(NODE_DIR)
    data: dict[str, Any] = json.loads((EXAMPLES_DIR / name).read_text(encoding="utf-8"))
    return data


def _official_params() -> dict[str, set[str]]:
    definition = _load("CompartmentDefinition-patient.json")
    assert definition["version"] == "4.0.1"
    return {
        entry["code"]: set(entry.get("param", []))
        for entry in definition["resource"]
        if entry["code"] in STORED_TYPES and entry.get("param")
    }


def _paths_of(resource_type: str, param: str) -> set[str]:
    """Element paths of a search parameter's expression, for one base type."""
    for path in EXAMPLES_DIR.glob("SearchParameter-*.json"):
        parameter = json.loads(path.read_text(encoding="utf-8"))
        if parameter.get("code") == param and resource_type in parameter.get("base", []):
            paths = set()
            for branch in parameter["expression"].split("|"):
                branch = re.sub(r"\.where\(resolve\(\) is Patient\)", "", branch.strip())
                if branch.startswith(f"{resource_type}."):
                    paths.add(branch.removeprefix(f"{resource_type}."))
            return paths
    raise AssertionError(f"no SearchParameter {resource_type}.{param}")


def test_types_and_parameters_are_the_official_ones() -> None:
    ours = {
        resource_type: {param for param, _ in pairs}
        for resource_type, pairs in R4_PATIENT_COMPARTMENT.items()
    }
    assert ours == _official_params()


def test_element_paths_are_the_parameters_expressions() -> None:
    for resource_type, params in _official_params().items():
        official = set().union(*(_paths_of(resource_type, param) for param in params))
        ours = {path for _, path in R4_PATIENT_COMPARTMENT[resource_type]}
        assert ours == official, resource_type
