"""Strict JSON parsing for FHIR bodies: no NaN, no duplicate keys, bounded nesting depth.

orjson is fast but silently keeps the last of duplicate keys, so bodies go through the stdlib
parser with a pairs hook; bodies are small and this costs tens of microseconds.
"""

import json
from typing import Any

import orjson

from service.fhir.errors import fhir_error


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


def parse_json(body: bytes, max_depth: int) -> Any:
    """Parse a request body or raise a 400 FhirError that says what is wrong."""
    if not body.strip():
        raise fhir_error(400, "structure", "The request body is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fhir_error(400, "structure", f"The body is not UTF-8: {exc.reason}") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except RecursionError:
        raise fhir_error(400, "structure", f"JSON nested deeper than {max_depth}") from None
    except ValueError as exc:
        raise fhir_error(400, "structure", f"Malformed JSON: {exc}") from None
    if _depth(value) > max_depth:
        raise fhir_error(400, "structure", f"JSON nested deeper than {max_depth}")
    return value


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
