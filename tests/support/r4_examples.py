"""The official FHIR R4 example resources (npm package hl7.fhir.r4.examples@4.0.1)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from tests.support.node import NODE_DIR, ensure_node_modules

# npm unpacks the tarball's package/ folder as the package root.
EXAMPLES_DIR = NODE_DIR / "node_modules" / "hl7.fhir.r4.examples"


def example_files(resource_type: str) -> list[Path]:
    """Paths of the examples of ``resource_type``, sorted by file name."""
    ensure_node_modules(NODE_DIR)
    # Files are named "<Type>-<id>.json"; the hyphen keeps e.g. ObservationDefinition
    # out of Observation. The resourceType check in _load guards the naming convention.
    return sorted(EXAMPLES_DIR.glob(f"{resource_type}-*.json"), key=lambda p: p.name)


@cache
def _load(resource_type: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    out: list[tuple[str, dict[str, Any]]] = []
    for path in example_files(resource_type):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("resourceType") == resource_type:
            out.append((path.name, data))
    return tuple(out)


def load_examples_named(resource_type: str) -> list[tuple[str, dict[str, Any]]]:
    """(file name, resource) pairs, sorted by file name; handy as pytest ids."""
    return [(name, copy.deepcopy(data)) for name, data in _load(resource_type)]


def load_examples(resource_type: str) -> list[dict[str, Any]]:
    """Official R4 examples of ``resource_type``, sorted by file name (deterministic).

    Each call returns fresh copies, so tests may mutate them.
    """
    return [data for _, data in load_examples_named(resource_type)]


def r4_search_parameters() -> list[dict[str, Any]]:
    """The official R4 SearchParameter definitions: the package's search-parameters Bundle
    (the core ones, each with its base types, type and FHIRPath expression)."""
    ensure_node_modules(NODE_DIR)
    path = EXAMPLES_DIR / "Bundle-searchParams.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from hl7.fhir.r4.examples")
    bundle = json.loads(path.read_text(encoding="utf-8"))
    return [entry["resource"] for entry in bundle["entry"]]
