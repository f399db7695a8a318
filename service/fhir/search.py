"""Parse a FHIR search query string into a structured, validated query.

Only parameters the type declares are kept (and appear in the ``self`` link); unknown ones are
ignored, or refused with 400 under ``Prefer: handling=strict``.
"""

import re
from dataclasses import dataclass, field

from service.fhir.errors import fhir_error
from service.fhir.search_params import INCLUDES, SearchParam, include_targets, params_for

RESULT_PARAMS = {
    "_count",
    "_sort",
    "_summary",
    "_elements",
    "_include",
    "_total",
    "_format",
    "_cursor",
    "_pretty",
}
MODIFIERS = {
    "token": {"missing", "not"},
    "uri": {"missing", "below"},
    "string": {"missing", "exact", "contains"},
    "reference": {"missing", "identifier"},
    "date": {"missing"},
    "quantity": {"missing"},
}
SORTABLE = {"date", "string", "token", "quantity"}
SUMMARY_VALUES = {"true", "false", "text", "data", "count"}
_SPLIT_RE = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class Clause:
    param: SearchParam
    modifier: str | None
    values: tuple[str, ...]  # OR-ed


@dataclass
class SearchQuery:
    resource_type: str
    clauses: list[Clause] = field(default_factory=list)
    count: int = 20
    sort: list[tuple[SearchParam, bool]] = field(default_factory=list)  # (param, descending)
    summary: str | None = None
    elements: list[str] | None = None
    # (parameter, target type or None): _include=Type:param[:Target]
    includes: list[tuple[SearchParam, str | None]] = field(default_factory=list)
    cursor: str | None = None
    total: str = "accurate"
    # The recognized parameters, in request order, for the self/next/previous links.
    link_params: list[tuple[str, str]] = field(default_factory=list)
    # This server's FHIR base URL: an absolute reference under it names a local resource.
    base_url: str | None = None


def split_values(text: str) -> list[str]:
    return [v.replace("\\,", ",") for v in _SPLIT_RE.split(text)]


def parse_search(
    resource_type: str,
    items: list[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
    strict: bool = False,
    base_url: str | None = None,
) -> SearchQuery:
    known = params_for(resource_type)
    query = SearchQuery(resource_type, count=default_count, base_url=base_url)
    for key, value in items:
        name, _, modifier = key.partition(":")
        if name in RESULT_PARAMS:
            _result_param(query, name, modifier, value, known, max_count)
            if name not in ("_format", "_cursor", "_pretty"):
                query.link_params.append((key, value))
            continue
        param = known.get(name)
        if param is None:
            if strict:
                raise fhir_error(400, "not-supported", f"Unknown search parameter {name!r}")
            continue
        # An unknown modifier changes the meaning of the search: never silently ignore it.
        if modifier and modifier not in MODIFIERS.get(param.type, set()):
            raise fhir_error(
                400, "not-supported", f"Modifier :{modifier} is not supported on {name}"
            )
        if value == "":
            raise fhir_error(400, "invalid", f"Search parameter {name} has no value")
        if modifier == "missing" and value not in ("true", "false"):
            raise fhir_error(400, "invalid", f"{key} takes true or false")
        query.clauses.append(Clause(param, modifier or None, tuple(split_values(value))))
        query.link_params.append((key, value))
    return query


def _result_param(
    query: SearchQuery,
    name: str,
    modifier: str,
    value: str,
    known: dict[str, SearchParam],
    max_count: int,
) -> None:
    if name == "_count":
        if not (value.isascii() and value.isdigit()):
            raise fhir_error(400, "invalid", "_count must be a non-negative integer")
        query.count = min(int(value), max_count)
    elif name == "_sort":
        for item in split_values(value):
            descending = item.startswith("-")
            param = known.get(item.lstrip("-"))
            if param is None or (param.type not in SORTABLE and param.name != "_id"):
                raise fhir_error(400, "not-supported", f"Cannot sort by {item!r}")
            query.sort.append((param, descending))
    elif name == "_summary":
        if value not in SUMMARY_VALUES:
            raise fhir_error(400, "invalid", f"_summary must be one of {sorted(SUMMARY_VALUES)}")
        query.summary = value
    elif name == "_elements":
        query.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif name == "_include":
        _include(query, value)
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise fhir_error(400, "invalid", "_total must be none, estimate or accurate")
        query.total = value
    elif name == "_cursor":
        query.cursor = value


def _include(query: SearchQuery, value: str) -> None:
    parts = value.split(":")
    if len(parts) not in (2, 3) or parts[0] != query.resource_type:
        raise fhir_error(400, "invalid", f"_include must be {query.resource_type}:<param>")
    allowed = INCLUDES.get(query.resource_type, ())
    if parts[1] not in allowed:
        raise fhir_error(400, "not-supported", f"_include {value!r} is not supported")
    target = parts[2] if len(parts) == 3 else None
    if target is not None and target not in include_targets(query.resource_type, parts[1]):
        allowed_targets = ", ".join(include_targets(query.resource_type, parts[1]))
        raise fhir_error(
            400,
            "invalid",
            f"_include {value!r}: {parts[1]} does not point at {target} "
            f"(it may point at {allowed_targets})",
        )
    query.includes.append((params_for(query.resource_type)[parts[1]], target))
