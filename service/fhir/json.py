"""Strict JSON parsing for FHIR bodies: no NaN, no duplicate keys, bounded nesting depth, no
control characters in strings, and only numbers the store keeps as they were sent.

orjson is fast but silently keeps the last of duplicate keys, so bodies go through the stdlib
parser with a pairs hook; bodies are small and this costs tens of microseconds.
"""

import json
import math
import re
from typing import Any

import orjson

from service.fhir.chars import control_character
from service.fhir.errors import fhir_error

# What orjson (the store's serializer, and its reader on both databases) keeps exactly.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_INT_MAX_DIGITS = 20
# A control character can reach a parsed string only through an escape (the parser refuses
# raw ones): \u0000-\u001f, \b or \f. A match (or an escaped backslash before "b") only
# triggers the walk that finds and names it.
_CONTROL_ESCAPE = re.compile(r"\\(?:u00[01][0-9a-fA-F]|[bf])")


class _Refused(ValueError):
    """A reason of this module's own, shown to the client as it is."""


class _Unstorable:
    """A number parsed from the body that the store cannot keep as sent; the walk after
    parsing finds it and names its element."""

    __slots__ = ("reason", "text")

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason


def _reject_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"duplicate key {key!r}")
        result[key] = value
    return result


def _float(text: str) -> float | _Unstorable:
    number = float(text)
    if math.isinf(number):
        return _Unstorable(text, "is too large for a 64-bit floating-point number")
    if number == 0.0 and any(c in "123456789" for c in text.lower().partition("e")[0]):
        return _Unstorable(text, "is too small for a 64-bit floating-point number (it would be 0)")
    return number


def _int(text: str) -> int | _Unstorable:
    # Checked by length first: int() refuses more than 4,300 digits with a ValueError.
    if len(text.lstrip("-")) > _INT_MAX_DIGITS:
        return _Unstorable(text, "does not fit in 64 bits")
    number = int(text)
    if not _INT_MIN <= number <= _INT_MAX:
        return _Unstorable(text, "does not fit in 64 bits")
    return number


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


def _shown(text: str, limit: int = 40) -> str:
    """A number or key for a message: shortened, control characters escaped."""
    short = text if len(text) <= limit else f"{text[:limit]}..."
    return short.encode("unicode_escape").decode("ascii")


def _problem(value: Any, path: str) -> tuple[str, str] | None:
    """The first (element path, reason) of an unstorable number or a string with a control
    character, in document order; None when there is none."""
    if isinstance(value, str):
        found = control_character(value)
        return (path, f"A string may not hold the control character {found}") if found else None
    if isinstance(value, _Unstorable):
        return path, f"The number {_shown(value.text)} {value.reason}: it cannot be stored exactly"
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{_shown(key, 64)}"
            found = control_character(key)
            if found:
                return where, f"A name may not hold the control character {found}"
            problem = _problem(item, where)
            if problem:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = _problem(item, f"{path}[{index}]")
            if problem:
                return problem
    return None


def parse_json(body: bytes, max_depth: int) -> Any:
    """Parse a request body or raise a 400 FhirError that says what is wrong."""
    if not body.strip():
        raise fhir_error(400, "structure", "The request body is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fhir_error(400, "structure", f"The body is not UTF-8: {exc.reason}") from None
    unstorable: list[str] = []

    def number(parse: Any) -> Any:
        def hook(text: str) -> Any:
            value = parse(text)
            if isinstance(value, _Unstorable):
                unstorable.append(text)
            return value

        return hook

    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
            parse_float=number(_float),
            parse_int=number(_int),
        )
    except RecursionError:
        raise fhir_error(400, "structure", f"JSON nested deeper than {max_depth}") from None
    except _Refused as exc:
        raise fhir_error(400, "structure", f"Malformed JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        # Its message is written for people: what was expected, line, column and offset.
        raise fhir_error(400, "structure", f"Malformed JSON: {exc}") from None
    except ValueError:  # nothing else raises one; its text would not be written for clients
        raise fhir_error(400, "structure", "Malformed JSON") from None
    if _depth(value) > max_depth:
        raise fhir_error(400, "structure", f"JSON nested deeper than {max_depth}")
    if unstorable or _CONTROL_ESCAPE.search(text):
        root = value.get("resourceType") if isinstance(value, dict) else None
        problem = _problem(value, root if isinstance(root, str) and root.isalpha() else "$")
        if problem:
            raise fhir_error(400, "value", problem[1], problem[0])
    return value


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
