"""Parse a FHIR search query string into a structured, validated query.

Only parameters the type declares are kept (and appear in the ``self`` link); unknown ones are
ignored, or refused with 400 under ``Prefer: handling=strict``.
"""

import re
from dataclasses import dataclass, field

from service.fhir.chars import control_character
from service.fhir.errors import fhir_error
from service.fhir.search_params import (
    INCLUDES,
    SearchParam,
    include_targets,
    params_for,
    revinclude_sources,
)

RESULT_PARAMS = {
    "_count",
    "_sort",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
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
# A page size or version: ASCII digits that fit a 64-bit SQL integer (int() of thousands of
# digits would raise, and costs quadratic time before that).
MAX_NUMBER_DIGITS = 18
SUMMARY_VALUES = {"true", "false", "text", "data", "count"}
_SPLIT_RE = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class SearchLimits:
    """How much one client's search may ask (settings CAREPLAN_MAX_SEARCH_CLAUSES and
    CAREPLAN_MAX_SEARCH_VALUES): each clause is an index lookup or subquery, and a few
    hundred of them kept PostgreSQL planning and running one search for minutes. The
    service's own searches have no limits."""

    clauses: int  # search parameters, each _sort key and _include counted
    values: int  # the comma-separated (OR-ed) values of all search parameters together


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
    # (source type, its parameter): _revinclude=Source:param[:Target] adds the resources of
    # the source type whose parameter points at a match
    revincludes: list[tuple[str, SearchParam]] = field(default_factory=list)
    cursor: str | None = None
    total: str = "accurate"
    # The recognized parameters, in request order, for the self/next/previous links.
    link_params: list[tuple[str, str]] = field(default_factory=list)
    # This server's FHIR base URL: an absolute reference under it names a local resource.
    base_url: str | None = None
    # What the caller may see, added by the server (never from the query string): a match
    # must satisfy every clause of at least one group. None: no such limit.
    access: tuple[tuple[Clause, ...], ...] | None = None


def split_values(text: str) -> list[str]:
    return [v.replace("\\,", ",") for v in _SPLIT_RE.split(text)]


def parse_count(text: str, max_count: int) -> int:
    """A `_count`: ASCII digits, at most MAX_NUMBER_DIGITS of them; capped at `max_count`."""
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_NUMBER_DIGITS):
        raise fhir_error(
            400,
            "invalid",
            f"_count must be a non-negative integer of at most {MAX_NUMBER_DIGITS} digits",
        )
    return min(int(text), max_count)


def check_characters(key: str, value: str) -> None:
    """400 for a control character in a search or history parameter: it must not reach a
    database (see service/fhir/chars.py)."""
    for text in (key, value):
        found = control_character(text)
        if found:
            name = key.encode("unicode_escape").decode("ascii")[:64]
            raise fhir_error(
                400, "value", f"Parameter {name!r} holds the control character {found}"
            )


def _check_limits(query: "SearchQuery", limits: SearchLimits) -> None:
    clauses = len(query.clauses) + len(query.sort) + len(query.includes)
    if clauses > limits.clauses:
        raise fhir_error(
            400,
            "too-costly",
            f"A search may have at most {limits.clauses} criteria "
            "(search parameters, _sort keys and _include together)",
        )
    values = sum(len(clause.values) for clause in query.clauses)
    if values > limits.values:
        raise fhir_error(
            400,
            "too-costly",
            f"A search may have at most {limits.values} values in its parameters together",
        )


def parse_search(
    resource_type: str,
    items: list[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
    strict: bool = False,
    base_url: str | None = None,
    limits: SearchLimits | None = None,
) -> SearchQuery:
    """`limits`: those of a client's search (checked as each parameter is read, so a
    request with thousands of them stops at the first one too many)."""
    known = params_for(resource_type)
    query = SearchQuery(resource_type, count=default_count, base_url=base_url)
    for key, value in items:
        check_characters(key, value)
        if limits is not None:
            _check_limits(query, limits)
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
        clause = Clause(param, modifier or None, tuple(split_values(value)))
        # A repeated clause ANDs what is already there: the query need not test it twice
        # (80 copies of one took PostgreSQL seconds to plan and run).
        if clause not in query.clauses:
            query.clauses.append(clause)
        query.link_params.append((key, value))
    if limits is not None:
        _check_limits(query, limits)
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
        query.count = parse_count(value, max_count)
    elif name == "_sort":
        for item in split_values(value):
            descending = item.startswith("-")
            param = known.get(item.lstrip("-"))
            if param is None or (param.type not in SORTABLE and param.name != "_id"):
                raise fhir_error(400, "not-supported", f"Cannot sort by {item!r}")
            # A later key on the same parameter orders nothing the first left tied.
            if all(param != earlier for earlier, _ in query.sort):
                query.sort.append((param, descending))
    elif name == "_summary":
        if value not in SUMMARY_VALUES:
            raise fhir_error(400, "invalid", f"_summary must be one of {sorted(SUMMARY_VALUES)}")
        query.summary = value
    elif name == "_elements":
        query.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif name == "_include":
        _include(query, value)
    elif name == "_revinclude":
        _revinclude(query, value)
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
    include = (params_for(query.resource_type)[parts[1]], target)
    if include not in query.includes:
        query.includes.append(include)


def _revinclude(query: SearchQuery, value: str) -> None:
    """Supported where `_include` is: `Source:param` when `_include=Source:param` is supported
    and the parameter may point at the searched type."""
    parts = value.split(":")
    allowed = revinclude_sources(query.resource_type)
    if len(parts) not in (2, 3) or ":".join(parts[:2]) not in allowed:
        raise fhir_error(
            400,
            "not-supported",
            f"_revinclude {value!r} is not supported on {query.resource_type}"
            + (f"; supported: {', '.join(allowed)}" if allowed else ""),
        )
    if len(parts) == 3 and parts[2] != query.resource_type:
        raise fhir_error(
            400,
            "invalid",
            f"_revinclude {value!r}: its target type must be {query.resource_type}, "
            "the type searched",
        )
    query.revincludes.append((parts[0], params_for(parts[0])[parts[1]]))
