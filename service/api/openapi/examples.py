"""OpenAPI examples taken from the protocol (tests/openapi/make_examples.py builds examples.json
from the protocol test builders: a real session and a hold-back decision)."""

import json
from functools import cache
from pathlib import Path
from typing import Any

_FILE = Path(__file__).with_name("examples.json")

# Which examples document the create/update body of a type.
_REQUEST: dict[str, tuple[str, ...]] = {
    "Patient": ("Patient",),
    "Observation": ("Observation", "ObservationRepetition"),
    "CarePlan": ("CarePlan",),
}


@cache
def _all() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = json.loads(_FILE.read_text(encoding="utf-8"))
    return found


def example(name: str) -> dict[str, Any]:
    """One example object ({"summary", "value"}) by name, e.g. "SessionBundle"."""
    copy: dict[str, Any] = json.loads(json.dumps(_all()[name]))  # a deep copy
    return copy


def request_examples(resource_type: str) -> dict[str, Any] | None:
    names = _REQUEST.get(resource_type)
    return {name: example(name) for name in names} if names else None


def response_examples(resource_type: str) -> dict[str, Any] | None:
    if resource_type == "GuidanceResponse":
        return {"holdBack": example("GuidanceResponse")}
    return None
