"""The protocol's shipped FHIR R4 knowledge artifacts (JSON under ``definitions/``).

The JSON files are the source of truth; this module only reads them. It does no validation and
no I/O beyond reading package data, so the API layer decides how to validate and store them.
"""

import json
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

# Every patient-facing artifact carries this sentence verbatim (protocol text, last paragraph).
DISCLAIMER = (
    "Your own physical condition and diagnosis may require specific modifications or "
    "precautions. Before undertaking any course of self-treatment you should consult a doctor "
    "or a physiotherapist."
)

# Load order: what a resource names must already exist (PlanDefinition names the rest).
_LOAD_ORDER: dict[str, int] = {
    "CodeSystem": 0,
    "ActivityDefinition": 1,
    "Questionnaire": 2,
    "PlanDefinition": 3,
    "OperationDefinition": 4,  # the service's own operations, not part of the protocol
    "SearchParameter": 5,  # the service's own search parameters, likewise
}


def _definitions_dir() -> Traversable:
    # importlib.resources works from a wheel or zip as well as from a source checkout.
    return files("service.protocol").joinpath("definitions")


def load_shipped_definitions() -> list[dict[str, Any]]:
    """Every shipped resource as a plain dict, dependencies first, then by id (deterministic)."""
    resources: list[dict[str, Any]] = []
    for entry in _definitions_dir().iterdir():
        if not entry.name.endswith(".json"):
            continue
        resource = json.loads(entry.read_text(encoding="utf-8"))
        if not isinstance(resource, dict) or "resourceType" not in resource:
            raise ValueError(f"{entry.name} is not a FHIR resource")
        resources.append(resource)
    resources.sort(
        key=lambda r: (_LOAD_ORDER.get(r["resourceType"], len(_LOAD_ORDER)), r.get("id", ""))
    )
    return resources


def shipped_definition(resource_type: str, resource_id: str) -> dict[str, Any]:
    """One shipped resource by type and id; KeyError when it is not shipped."""
    for resource in load_shipped_definitions():
        if resource["resourceType"] == resource_type and resource.get("id") == resource_id:
            return resource
    raise KeyError(f"{resource_type}/{resource_id}")
