"""CDS Hooks JSON shapes, read from HL7's own logical models (tests/support/cds_hooks/*.fsh,
vendored verbatim; SOURCE.md says from where), so the service's discovery document, cards and
feedback are checked against text nobody on the team wrote.

The FSH is read for what the shapes need: each element's path, cardinality and type, its
required bindings, the invariants it ``obeys``, and the elements allowed to be empty
(``json-empty-behavior #present``) or keyed maps (``json-property-key``). The bound value
sets are not in the repository; their codes are the CDS Hooks 2.0.1 specification's own
lists (SOURCE.md). Each invariant id the models name must be implemented below, so a newer
vendored model cannot add one silently. Besides the models, the specification's text rules
that no model states are checked: summary under 140 characters, no null or empty JSON
value, a create or update action carries its resource.

    problems = check("CDSHooksResponse", document)   # [] when it conforms
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent / "cds_hooks"
_ELEMENT = re.compile(
    r"^\* (?P<path>[\w.]+) (?P<min>\d+)\.\.(?P<max>\d+|\*) (?P<type>\S+)(?: (?P<ref>#\S+))?"
)
_BINDING = re.compile(r"^\* (?P<path>[\w.]+) from (?P<vs>\S+) \((?P<strength>\w+)\)")
_OBEYS = re.compile(r"^\* (?P<path>[\w.]+) obeys (?P<ids>.+)$")
_EXTENSION_URL = re.compile(
    r'^\* (?P<path>[\w.]+) \^extension(?:\[[^\]]*\])?\.url = "(?P<url>[^"]+)"'
)
_EXTENSION_CODE = re.compile(
    r"^\* (?P<path>[\w.]+) \^extension(?:\[[^\]]*\])?\.valueCode = #(?P<code>\S+)"
)
_TOOLS = "http://hl7.org/fhir/tools/StructureDefinition/"

# CDS Hooks 2.0.1 (index.md of HL7/cds-hooks at tag v2.0.1): the allowed values its text lists.
VALUE_SETS = {
    "http://hl7.org/fhir/tools/ValueSet/CDSIndicator": {"info", "warning", "critical"},
    "http://hl7.org/fhir/tools/ValueSet/CDSSelectionBehavior": {"at-most-one", "any"},
    "http://hl7.org/fhir/tools/ValueSet/CDSActionType": {"create", "update", "delete"},
    "http://hl7.org/fhir/tools/ValueSet/CDSLinkType": {"absolute", "smart"},
}
MAX_SUMMARY = 139  # "One-sentence, <140-character summary message"


@dataclass
class Element:
    path: str
    min: int
    max: str
    type: str
    binding: set[str] | None = None
    invariants: list[str] = field(default_factory=list)
    may_be_empty: bool = False
    keyed: bool = False


@cache
def model(name: str) -> dict[str, Element]:
    """path -> Element of one vendored logical model (CDSHooksResponse, CDSHooksServices,
    CDSHooksFeedback)."""
    elements: dict[str, Element] = {}
    extension_urls: dict[str, str] = {}
    references: dict[str, str] = {}
    for line in (HERE / f"{name}.fsh").read_text(encoding="utf-8").splitlines():
        if found := _ELEMENT.match(line):
            path = found["path"]
            elements[path] = Element(path, int(found["min"]), found["max"], found["type"])
            if found["type"] == "contentReference" and found["ref"]:
                references[path] = found["ref"].split(".", 1)[1]
        elif found := _BINDING.match(line):
            assert found["strength"] == "required", line
            elements[found["path"]].binding = VALUE_SETS[found["vs"]]
        elif found := _OBEYS.match(line):
            elements[found["path"]].invariants += [i.strip() for i in found["ids"].split(" and ")]
        elif found := _EXTENSION_URL.match(line):
            extension_urls[found["path"]] = found["url"]
            if found["url"] == f"{_TOOLS}json-property-key":
                elements[found["path"]].keyed = True
        elif (found := _EXTENSION_CODE.match(line)) and extension_urls.get(
            found["path"]
        ) == f"{_TOOLS}json-empty-behavior":
            elements[found["path"]].may_be_empty = found["code"] == "present"
    for path, target in references.items():
        # systemActions: the elements of a suggestion's action, at another path.
        elements[path].type = elements[target].type
        for other in list(elements):
            if other.startswith(target + "."):
                copied = elements[other]
                moved = path + other[len(target) :]
                elements[moved] = Element(
                    moved, copied.min, copied.max, copied.type, copied.binding
                )
    unknown = {i for e in elements.values() for i in e.invariants} - set(INVARIANTS)
    assert not unknown, f"invariants named by {name}.fsh but not implemented here: {unknown}"
    for invariant in {i for e in elements.values() for i in e.invariants}:
        assert (HERE / "invariants" / f"{invariant}.fsh").exists(), invariant
    return elements


def check(name: str, document: Any) -> list[str]:
    """Every way ``document`` breaks the model ``name`` (empty: it conforms)."""
    problems: list[str] = []
    if not isinstance(document, dict):
        return [f"{name}: not a JSON object"]
    _object(model(name), "", document, name, problems)
    return problems


def _children(elements: dict[str, Element], parent: str) -> dict[str, Element]:
    prefix = f"{parent}." if parent else ""
    return {
        path[len(prefix) :]: element
        for path, element in elements.items()
        if path.startswith(prefix) and "." not in path[len(prefix) :]
    }


def _object(
    elements: dict[str, Element], parent: str, value: dict[str, Any], where: str, out: list[str]
) -> None:
    children = _children(elements, parent)
    for key in value:
        if key not in children and key != "extension":
            out.append(f"{where}.{key}: not an element of the model")
    for key, element in children.items():
        at = f"{where}.{key}"
        if key not in value:
            if element.min > 0:
                out.append(f"{at}: required")
            continue
        item = value[key]
        if item is None or (item in ("", [], {}) and not element.may_be_empty):
            out.append(f"{at}: null or empty (CDS Hooks: omit it instead)")
            continue
        if element.max == "*" and not element.keyed:
            if not isinstance(item, list):
                out.append(f"{at}: must be an array")
                continue
            if len(item) < element.min:
                out.append(f"{at}: needs at least {element.min}")
            for i, entry in enumerate(item):
                _value(elements, element, entry, f"{at}[{i}]", out)
        else:
            _value(elements, element, item, at, out)
        for invariant in element.invariants:
            for index, target in _targets(item, element):
                if not INVARIANTS[invariant](target):
                    out.append(f"{at}{index}: breaks {invariant} ({_description(invariant)})")


def _targets(item: Any, element: Element) -> list[tuple[str, Any]]:
    if element.max == "*" and isinstance(item, list):
        return [(f"[{i}]", entry) for i, entry in enumerate(item) if isinstance(entry, dict)]
    return [("", item)] if isinstance(item, dict) else []


def _value(
    elements: dict[str, Element], element: Element, value: Any, at: str, out: list[str]
) -> None:
    kind = element.type
    creates = isinstance(value, dict) and value.get("type") in ("create", "update")
    if element.path.endswith("actions") and creates and not isinstance(value.get("resource"), dict):
        out.append(f"{at}: a {value.get('type')} action carries its resource")
    if element.keyed:
        if not isinstance(value, dict):
            out.append(f"{at}: must be an object of keys to values")
            return
        inner = _children(elements, element.path)["value"]
        for key, entry in value.items():
            _value(elements, inner, entry, f"{at}.{key}", out)
        return
    if kind.startswith(_TOOLS) or kind == "Base":
        if not isinstance(value, dict):
            out.append(f"{at}: must be an object")
        else:
            _object(elements, element.path, value, at, out)
        return
    problem = _PRIMITIVES[kind](value) if kind in _PRIMITIVES else f"unknown type {kind}"
    if problem:
        out.append(f"{at}: {problem}")
    elif element.binding is not None and value not in element.binding:
        out.append(f"{at}: {value!r} is not one of {sorted(element.binding)}")
    summary = element.path.endswith("cards.summary") and isinstance(value, str)
    if summary and len(value) > MAX_SUMMARY:
        out.append(f"{at}: {len(value)} characters; a summary is under 140")


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


def _code(value: Any) -> str | None:
    if not isinstance(value, str) or not value or value != value.strip():
        return "must be a code (a string without surrounding spaces)"
    return None


def _uuid(value: Any) -> str | None:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return "must be a UUID"
    return None


def _url(value: Any) -> str | None:
    if not isinstance(value, str) or not urlsplit(value).scheme or not urlsplit(value).netloc:
        return "must be an absolute URL"
    return None


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _instant(value: Any) -> str | None:
    if not isinstance(value, str) or not re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value
    ):
        return "must be an instant (RFC 3339 with a time zone)"
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _coding(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be a Coding object"
    extra = set(value) - {"system", "version", "code", "display", "userSelected"}
    if extra:
        return f"a Coding has no {sorted(extra)}"
    if any(not isinstance(value[k], str) or not value[k] for k in set(value) - {"userSelected"}):
        return "a Coding's system, code and display are non-empty strings"
    return None


def _resource(value: Any) -> str | None:
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return "must be a FHIR resource"
    return None


_PRIMITIVES: dict[str, Callable[[Any], str | None]] = {
    "string": _string,
    "markdown": _string,
    "code": _code,
    "uuid": _uuid,
    "url": _url,
    "boolean": _boolean,
    "instant": _instant,
    "Coding": _coding,
    "Resource": _resource,
}

# The invariants, as their FSH expressions state them (invariants/<id>.fsh).
INVARIANTS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "cds-resp-1": lambda card: (
        card.get("selectionBehavior") != "at-most-one"
        or sum(1 for s in card.get("suggestions", []) if s.get("isRecommended") is True) <= 1
    ),
    "cds-resp-2": lambda action: (
        action.get("type") != "delete" or ("resourceId" in action and "resource" not in action)
    ),
    "cds-resp-3": lambda link: link.get("type") == "smart" or "appContext" not in link,
    "cds-resp-4": lambda coding: bool(coding.get("display")),
    "cds-resp-5": lambda suggestion: all(
        "description" in action for action in suggestion.get("actions", [])
    ),
    "cds-resp-6": lambda card: "suggestions" not in card or "selectionBehavior" in card,
    "cds-resp-7": lambda suggestion: (
        suggestion.get("actionSelectionBehavior") in (None, "all", "any", "at-most-one")
    ),
    "cds-fb-1": lambda entry: entry.get("outcome") in ("accepted", "overridden"),
    "cds-fb-2": lambda entry: (
        entry.get("outcome") != "accepted" or bool(entry.get("acceptedSuggestions"))
    ),
    "cds-fb-3": lambda reason: "reason" in reason or "userComment" in reason,
}


def _description(invariant: str) -> str:
    text = (HERE / "invariants" / f"{invariant}.fsh").read_text(encoding="utf-8")
    found = re.search(r'Description: "([^"]+)"', text)
    return found[1] if found else invariant
