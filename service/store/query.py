"""Translate a parsed SearchQuery into SQL over the index tables (never scanning JSON)."""

import base64
import math
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from service.fhir.dates import MAX_DT, MIN_DT, parse_range
from service.fhir.errors import fhir_error
from service.fhir.indexing import normalize_string, parse_reference
from service.fhir.search import Clause, SearchQuery
from service.fhir.search_params import SearchParam
from service.store.tables import INDEX_TABLES, resource

_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def _split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in _PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def _kind(param: SearchParam) -> str:
    return "token" if param.type == "uri" else param.type


def _exists(param: SearchParam, condition: sa.ColumnElement[bool] | None) -> sa.Exists:
    """A per-candidate check. It leaves res_type out on purpose: every value index leads
    with res_type, so the only index it can use is the one keyed by the resource itself."""
    table = INDEX_TABLES[_kind(param)]
    where = [table.c.resource_seq == resource.c.seq, table.c.param == param.name]
    if condition is not None:
        where.append(condition)
    return sa.exists().where(*where)


def _tokens_condition(table: sa.Table, values: tuple[str, ...]) -> sa.ColumnElement[bool]:
    """OR of token values, as `system = s AND code IN (...)` per system so an index on
    (code, system) serves them all instead of a scan filtered term by term."""
    by_system: dict[str | None, list[str]] = {}
    others: list[sa.ColumnElement[bool]] = []
    for value in values:
        system, bar, code = value.partition("|") if "|" in value else (None, "", value)
        if bar and (not code or system == ""):
            others.append(_token_condition(table, value))
        else:
            by_system.setdefault(system, []).append(code)
    for system, codes in by_system.items():
        in_codes = table.c.code.in_(codes)
        others.append(in_codes if system is None else sa.and_(in_codes, table.c.system == system))
    return sa.or_(*others)


def _token_condition(table: sa.Table, value: str) -> sa.ColumnElement[bool]:
    if "|" in value:
        system, _, code = value.partition("|")
        parts = []
        if code:
            parts.append(table.c.code == code)
        parts.append(table.c.system.is_(None) if system == "" else table.c.system == system)
        return sa.and_(*parts)
    return table.c.code == value


def _widen(moment: datetime, days: int) -> datetime:
    """moment +/- days, clamped to the representable range (year 1 and 9999 overflow)."""
    try:
        return moment + timedelta(days=days)
    except OverflowError:
        return MAX_DT if days > 0 else MIN_DT


def _date_condition(table: sa.Table, value: str, name: str) -> sa.ColumnElement[bool]:
    prefix, text = _split_prefix(value)
    try:
        low, high = parse_range(text)
    except ValueError as exc:
        raise fhir_error(400, "invalid", f"{name}: {exc}") from None
    lo, hi = table.c.low, table.c.high
    if prefix == "eq":
        return sa.and_(lo >= low, hi <= high)
    if prefix == "ne":
        return sa.not_(sa.and_(lo >= low, hi <= high))
    if prefix == "gt":
        return hi > high
    if prefix == "lt":
        return lo < low
    # ge/le (R4 search): the range above/below the value overlaps the target's range, or the
    # value's range contains it. The first conjunct is implied; it keeps the index range scan.
    if prefix == "ge":
        return sa.and_(hi >= low, sa.or_(hi > high, lo >= low))
    if prefix == "le":
        return sa.and_(lo <= high, sa.or_(lo < low, hi <= high))
    if prefix == "sa":
        return lo > high
    if prefix == "eb":
        return hi < low
    # ap: overlap with the value widened by a day on each side.
    return sa.and_(lo <= _widen(high, 1), hi >= _widen(low, -1))


def _number(text: str, name: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise fhir_error(400, "invalid", f"{name}: {text!r} is not a number") from None
    if not math.isfinite(number):
        raise fhir_error(400, "invalid", f"{name}: {text!r} is not a finite number")
    return number


def _quantity_condition(table: sa.Table, value: str, name: str) -> sa.ColumnElement[bool]:
    prefix, text = _split_prefix(value)
    number_text, *unit = text.split("|")
    number = _number(number_text, name)
    decimals = len(number_text.partition(".")[2]) if "." in number_text else 0
    half = 0.5 * 10 ** (-decimals)  # implicit precision: 5.4 means [5.35, 5.45)
    v = table.c.value
    conditions = {
        "eq": sa.and_(v >= number - half, v < number + half),
        "ne": sa.or_(v < number - half, v >= number + half),
        "gt": v > number,
        "lt": v < number,
        "ge": v >= number,
        "le": v <= number,
        "sa": v > number,
        "eb": v < number,
        "ap": sa.and_(v >= number * 0.9, v <= number * 1.1)
        if number >= 0
        else sa.and_(v <= number * 0.9, v >= number * 1.1),
    }
    parts = [conditions[prefix]]
    if len(unit) == 2:
        system, code = unit
        if system:
            parts.append(table.c.system == system)
        if code:
            parts.append(table.c.code == code)
    elif unit:
        raise fhir_error(400, "invalid", f"{name}: use number|system|code")
    return sa.and_(*parts)


def _reference_condition(table: sa.Table, param: SearchParam, value: str) -> sa.ColumnElement[bool]:
    url, _, version = value.partition("|")
    versioned = [table.c.target_version == version] if version else []
    target_type, target_id = parse_reference(url)
    if "://" in url:
        parts = [table.c.target_url == url, *versioned]
        # An absolute reference to a resource also matches the relative (local) form.
        if target_id is not None:
            local = sa.and_(
                table.c.target_url.is_(None),
                table.c.target_type == target_type,
                table.c.target_id == target_id,
                *versioned,
            )
            return sa.or_(sa.and_(*parts), local)
        return sa.and_(*parts)
    # Relative references and bare ids name resources on this server, never another server's
    # resource that happens to have the same type and id.
    local_only = table.c.target_url.is_(None)
    if target_id is not None:
        return sa.and_(
            local_only, table.c.target_type == target_type, table.c.target_id == target_id
        )
    if "/" in url:
        raise fhir_error(400, "invalid", f"{param.name}: {value!r} is not a reference")
    condition = sa.and_(local_only, table.c.target_id == url)  # a bare id
    if len(param.targets) == 1:
        condition = sa.and_(condition, table.c.target_type == param.targets[0])
    return condition


def _value_condition(clause: Clause, value: str) -> sa.ColumnElement[bool]:
    param = clause.param
    table = INDEX_TABLES[_kind(param)]
    if param.type in ("token", "uri"):
        if param.type == "uri" and clause.modifier == "below":
            return table.c.code.startswith(value, autoescape=True)
        return _token_condition(table, value)
    if param.type == "string":
        if clause.modifier == "exact":
            return table.c.value_exact == value
        needle = normalize_string(value)
        if clause.modifier == "contains":
            return table.c.value_norm.contains(needle, autoescape=True)
        return table.c.value_norm.startswith(needle, autoescape=True)
    if param.type == "date":
        return _date_condition(table, value, param.name)
    if param.type == "quantity":
        return _quantity_condition(table, value, param.name)
    return _reference_condition(table, param, value)


def _envelope_condition(clause: Clause) -> sa.ColumnElement[bool]:
    """_id and _lastUpdated read the resource row itself."""
    if clause.param.name == "_id":
        return resource.c.res_id.in_(clause.values)
    ors = []
    for value in clause.values:
        prefix, text = _split_prefix(value)
        try:
            low, high = parse_range(text)
        except ValueError as exc:
            raise fhir_error(400, "invalid", f"_lastUpdated: {exc}") from None
        col = resource.c.last_updated
        ors.append(
            {
                "eq": sa.and_(col >= low, col <= high),
                "ne": sa.or_(col < low, col > high),
                "gt": col > high,
                "sa": col > high,
                "lt": col < low,
                "eb": col < low,
                "ge": col >= low,
                "le": col <= high,
                "ap": sa.and_(col >= _widen(low, -1), col <= _widen(high, 1)),
            }[prefix]
        )
    return sa.or_(*ors)


def clause_condition(clause: Clause) -> sa.ColumnElement[bool]:
    if clause.param.name in ("_id", "_lastUpdated"):
        if clause.modifier == "missing":
            return sa.false() if clause.values[0] == "true" else sa.true()
        return _envelope_condition(clause)
    if clause.modifier == "missing":
        present = _exists(clause.param, None)
        return sa.not_(present) if clause.values[0] == "true" else present
    if clause.modifier == "not":
        return sa.not_(_exists(clause.param, _values_condition(clause)))
    return _exists(clause.param, _values_condition(clause))


def _values_condition(clause: Clause) -> sa.ColumnElement[bool]:
    """The OR of a clause's values."""
    if clause.param.type == "token" and clause.modifier is None:
        return _tokens_condition(INDEX_TABLES["token"], clause.values)
    return sa.or_(*(_value_condition(clause, v) for v in clause.values))


def _driver_rank(clause: Clause) -> int | None:
    """How selective a clause is likely to be as the index lookup that drives the query.

    SQLite evaluates a correlated EXISTS once per candidate row, so without a driver every
    search would walk all resources of the type. The driver becomes ``seq IN (index lookup)``
    and the other clauses are checked per candidate; lower rank = more selective.
    """
    param = clause.param
    if clause.modifier in ("missing", "not") or param.name in ("_id", "_lastUpdated"):
        return None
    if param.name == "identifier":
        return 0
    if param.type == "uri" or (param.type == "token" and all("|" in v for v in clause.values)):
        return 1
    return {"reference": 2, "token": 3, "date": 4}.get(param.type, 5)


def _in_driver(clause: Clause, resource_type: str) -> sa.ColumnElement[bool]:
    table = INDEX_TABLES[_kind(clause.param)]
    lookup = sa.select(table.c.resource_seq).where(
        table.c.res_type == resource_type,
        table.c.param == clause.param.name,
        _values_condition(clause),
    )
    return resource.c.seq.in_(lookup)


def _compartment_date_driver(
    query: SearchQuery,
) -> tuple[sa.ColumnElement[bool], list[Clause]] | None:
    """patient=Patient/x plus date bounds: one range scan of that patient's dated rows.

    This keeps a decision's record window as cheap for a patient with 10,000 stored sessions
    as for one with a single session (the index is on res_type, param, compartment, high).
    """
    patient = next(
        (
            c
            for c in query.clauses
            if c.param.name in ("patient", "subject")
            and c.modifier is None
            and len(c.values) == 1
            and c.values[0].startswith("Patient/")
        ),
        None,
    )
    dates = [
        c
        for c in query.clauses
        if c.param.type == "date"
        and c.modifier is None
        and len(c.values) == 1
        and c.param.name != "_lastUpdated"
    ]
    if patient is None or not dates or len({c.param.name for c in dates}) != 1:
        return None
    if not any(
        c.values[0][:2] in ("ge", "gt", "eq", "sa") or c.values[0][:1].isdigit() for c in dates
    ):
        return None  # no lower bound: the range would run over the whole history
    table = INDEX_TABLES["date"]
    lookup = sa.select(table.c.resource_seq).where(
        table.c.res_type == query.resource_type,
        table.c.param == dates[0].param.name,
        table.c.compartment == patient.values[0],
        *(_value_condition(c, c.values[0]) for c in dates),
    )
    return resource.c.seq.in_(lookup), [patient, *dates]


def where_clauses(query: SearchQuery) -> list[sa.ColumnElement[bool]]:
    conditions = [resource.c.deleted.is_(False)]
    remaining = list(query.clauses)
    driver: sa.ColumnElement[bool] | None = None
    compartment = _compartment_date_driver(query)
    if compartment is not None:
        driver, covered = compartment
        # The patient clause is implied by the compartment; dates are in the driver.
        remaining = [c for c in remaining if c not in covered]
    else:
        ranked = [
            (rank, i) for i, c in enumerate(remaining) if (rank := _driver_rank(c)) is not None
        ]
        if ranked:
            _, index = min(ranked)
            driver = _in_driver(remaining.pop(index), query.resource_type)
    if driver is not None:
        # `res_type || ''` keeps SQLite from walking the type index instead of looking the
        # driver's rows up by primary key; PostgreSQL plans it the same either way.
        conditions += [driver, resource.c.res_type.concat("") == query.resource_type]
    else:
        conditions.append(resource.c.res_type == query.resource_type)
    conditions.extend(clause_condition(c) for c in remaining)
    return conditions


# --- ordering and keyset paging -------------------------------------------------------------
# Pages are cut by the sort key of the last row seen (a cursor), not by an offset, so rows
# written between two page requests never shift, skip or repeat the rows of the next page.


def sort_columns(query: SearchQuery) -> list[tuple[sa.ColumnElement[Any], bool]]:
    columns: list[tuple[sa.ColumnElement[Any], bool]] = []
    for param, descending in query.sort:
        if param.name == "_lastUpdated":
            columns.append((resource.c.last_updated, descending))
        elif param.name == "_id":
            columns.append((resource.c.res_id, descending))
        else:
            columns.append((_sort_value(param, descending), descending))
    columns.append((resource.c.seq, False))
    return columns


def _sort_value(param: SearchParam, descending: bool) -> sa.ColumnElement[Any]:
    table = INDEX_TABLES[_kind(param)]
    column_name, missing = {
        "date": ("high" if descending else "low", MIN_DT if descending else MAX_DT),
        "string": ("value_norm", "" if descending else "\uffff"),
        "token": ("code", "" if descending else "\uffff"),
        "quantity": ("value", -1e308 if descending else 1e308),
    }[_kind(param)]
    column = table.c[column_name]
    aggregate = sa.func.max(column) if descending else sa.func.min(column)
    inner = (
        sa.select(aggregate)
        .where(table.c.resource_seq == resource.c.seq, table.c.param == param.name)
        .scalar_subquery()
    )
    # Resources without a value sort last in both directions.
    return sa.func.coalesce(inner, sa.literal(missing, type_=column.type))


def encode_cursor(values: list[Any], backwards: bool) -> str:
    encoded = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = orjson.dumps({"k": encoded, "b": backwards})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str, columns: list[tuple[sa.ColumnElement[Any], bool]]
) -> tuple[list[Any], bool]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        values = data["k"]
        if not isinstance(values, list) or len(values) != len(columns):
            raise ValueError("cursor does not match the sort")
        decoded = [
            datetime.fromisoformat(v) if isinstance(col.type, sa.DateTime) and v is not None else v
            for (col, _), v in zip(columns, values, strict=True)
        ]
        return decoded, bool(data["b"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise fhir_error(400, "invalid", "Invalid or outdated paging cursor") from None


def after(
    columns: list[tuple[sa.ColumnElement[Any], bool]], values: list[Any], backwards: bool
) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor in sort order (before it when going backwards)."""
    ors = []
    for i, (column, descending) in enumerate(columns):
        equal = [columns[j][0] == values[j] for j in range(i)]
        later = (column < values[i]) if (descending != backwards) else (column > values[i])
        ors.append(sa.and_(*equal, later))
    return sa.or_(*ors)


def order_by(
    columns: list[tuple[sa.ColumnElement[Any], bool]], backwards: bool
) -> list[sa.ColumnElement[Any]]:
    return [c.desc() if (d != backwards) else c.asc() for c, d in columns]
