"""Extract search index rows from a resource, for the parameters in search_params.py."""

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from service.fhir.dates import MAX_DT, MIN_DT, parse_range
from service.fhir.search_params import SEARCH_PARAMS, SearchParam

IndexRows = dict[str, list[dict[str, Any]]]  # table kind -> rows (without resource_seq)

_REFERENCE_RE = re.compile(
    r"^(?:(?P<base>https?://\S+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)
_STRING_LIMIT = 512
# Bump when a change here alters the rows a resource gets (tests/store/test_reindex.py pins the rows
# of the official examples to it): stored rows are then rebuilt on `careplan migrate`.
INDEXER_VERSION = 4


def normalize_string(text: str) -> str:
    """Case- and accent-insensitive form used by string search."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())[:_STRING_LIMIT]


def walk(value: Any, path: str) -> Iterator[Any]:
    """Every value at a dotted path; arrays are flattened at each step."""
    items = [value]
    for step in path.split("."):
        next_items = []
        for item in items:
            if isinstance(item, dict) and step in item:
                found = item[step]
                next_items.extend(found if isinstance(found, list) else [found])
        items = next_items
    yield from items


def parse_reference(text: str) -> tuple[str | None, str | None]:
    match = _REFERENCE_RE.match(text)
    if not match:
        return None, None
    return match["type"], match["id"]


def _token_rows(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or []:
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    yield coding.get("system"), coding["code"]
        elif isinstance(value.get("value"), str):  # Identifier
            yield value.get("system"), value["value"]
        elif isinstance(value.get("code"), str):  # Coding
            yield value.get("system"), value["code"]


def _string_values(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):  # HumanName, Address: every text part
        for key in ("text", "family", "given", "prefix", "suffix", "line", "city", "country"):
            part = value.get(key)
            for text in part if isinstance(part, list) else [part]:
                if isinstance(text, str):
                    yield text


def _reference_row(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        value = value.get("reference")
    if not isinstance(value, str) or value.startswith("#"):
        return None
    url, _, version = value.partition("|")
    target_type, target_id = parse_reference(url)
    return {
        "target_type": target_type,
        "target_id": target_id,
        "target_url": url[:_STRING_LIMIT] if "://" in url or target_id is None else None,
        "target_version": version[:64] or None,
    }


def _date_row(value: Any) -> dict[str, Any] | None:
    try:
        if isinstance(value, str):
            low, high = parse_range(value)
        elif isinstance(value, dict) and ("start" in value or "end" in value):
            low = parse_range(value["start"])[0] if "start" in value else MIN_DT
            high = parse_range(value["end"])[1] if "end" in value else MAX_DT
        else:
            return None
    except (ValueError, TypeError):
        return None  # validation already rejected malformed dates; never fail indexing
    return {"low": low, "high": high}


def _quantity_row(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not isinstance(value.get("value"), int | float):
        return None
    return {
        "value": float(value["value"]),
        "system": value.get("system"),
        "code": value.get("code") or value.get("unit"),
    }


def _rows_for(param: SearchParam, value: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = param.type
    if kind in ("token", "uri"):
        for system, code in _token_rows(value):
            yield "token", {"system": system, "code": code[:_STRING_LIMIT]}
    elif kind == "string":
        for text in _string_values(value):
            yield "string", {"value_norm": normalize_string(text), "value_exact": text[:512]}
    elif kind == "reference":
        row = _reference_row(value)
        if row and (not param.targets or row["target_type"] in param.targets):
            yield "reference", row
        # Reference.identifier, for `param:identifier=system|value` (a token row under the
        # reference parameter's name; a reference parameter has no token rows otherwise). A
        # parameter limited to some types takes it only from a Reference that names its type.
        identifier = value.get("identifier") if isinstance(value, dict) else None
        typed = not param.targets or (
            isinstance(value, dict) and value.get("type") in param.targets
        )
        if isinstance(identifier, dict) and typed:
            for system, code in _token_rows(identifier):
                yield "token", {"system": system, "code": code[:_STRING_LIMIT]}
    elif kind == "date":
        row = _date_row(value)
        if row:
            yield "date", row
    elif kind == "quantity":
        row = _quantity_row(value)
        if row:
            yield "quantity", row


def _has_any_token(rows: IndexRows, tokens: tuple[tuple[str, str, str], ...]) -> bool:
    present = {(r["param"], r["system"], r["code"]) for r in rows.get("token", [])}
    return any(token in present for token in tokens)


def index_rows(resource: dict[str, Any]) -> IndexRows:
    rows: IndexRows = {}
    seen: set[tuple[str, str, tuple[Any, ...]]] = set()
    params = SEARCH_PARAMS.get(resource["resourceType"], [])
    for param in params:
        for path in param.paths:
            for value in walk(resource, path):
                for kind, row in _rows_for(param, value):
                    key = (param.name, kind, tuple(row.values()))
                    if key in seen:
                        continue
                    seen.add(key)
                    rows.setdefault(kind, []).append({"param": param.name, **row})
    for param in params:
        if param.unless and _has_any_token(rows, param.unless):
            for kind in list(rows):
                kept = [row for row in rows[kind] if row["param"] != param.name]
                if kept:
                    rows[kind] = kept
                else:
                    del rows[kind]
    # The patient compartments the resource is in: every local Patient reference of its
    # `patient` parameter (another server's Patient/x is not this server's Patient/x). A date
    # row is written once per compartment, so patient + date finds the resource from each.
    local_patients: list[str] = sorted(
        {
            f"Patient/{r['target_id']}"
            for r in rows.get("reference", [])
            if r["param"] == "patient"
            and r["target_type"] == "Patient"
            and r["target_id"] is not None
            and r["target_url"] is None
        }
    )
    compartments: list[str | None] = [*local_patients] if local_patients else [None]
    if "date" in rows:
        rows["date"] = [
            {**row, "compartment": compartment}
            for row in rows["date"]
            for compartment in compartments
        ]
    return rows
