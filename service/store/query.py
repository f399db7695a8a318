"""Translate a parsed SearchQuery into SQL over the index tables (never scanning JSON).

Two steps, so the SQL of a query is built once per *shape* rather than once per call:

- ``where(query)`` reads the query's values (validating them, in request order) into a
  *shape*, a hashable description of the SQL in which every value is replaced by the name of
  a bound parameter, plus the values for those parameters. It is plain Python: no SQLAlchemy.
- ``conditions(shape)`` turns a shape into SQLAlchemy expressions with ``bindparam``s. It is
  cached, and a cached expression also hits SQLAlchemy's compiled cache, so a repeated query
  costs neither expression building nor compiling.

A shape names every structural decision (prefix, modifier, which columns, how values group),
so two queries with equal shapes differ only in the values bound at execution.
"""

import base64
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa

from service.fhir.dates import MAX_DT, MIN_DT, parse_range
from service.fhir.indexing import normalize_string, parse_reference
from service.fhir.search import Clause, SearchQuery
from service.fhir.search_params import SearchParam
from service.store.engine.prepared import one_off
from service.store.errors import InvalidQuery
from service.store.tables import INDEX_TABLES, resource

_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_ESCAPE = "/"  # the LIKE escape character (what SQLAlchemy's autoescape uses)
_CACHE_SIZE = 512
# A shape's size: its bound values and clauses. Larger shapes (about ten clauses and more,
# or many OR-ed values of a kind that adds SQL per value) are rare and each costs tens of KB
# compiled, so they are built for each call and kept neither here nor by the
# prepared-statement caches (a client choosing distinct large shapes would otherwise fill
# every cache with them: 14 grew the process from 186 to 440 MB).
MAX_CACHED_SHAPE_SIZE = 24

# A node of a shape: a tuple whose first item says what it is (see _BUILDERS).
Node = tuple[Any, ...]
# (resource type, driver node or None, clause nodes, size): see `where`.
Shape = tuple[Any, ...]
Columns = Sequence[tuple[sa.ColumnElement[Any], bool]]
R = TypeVar("R")

# What a stored resource is read as, in the field order of repository.Stored: its rows unpack
# positionally (much cheaper than by name). Same SQL as selecting the table's columns.
STORED_COLUMNS = (
    resource.c.seq,
    resource.c.res_type,
    resource.c.res_id,
    resource.c.version,
    resource.c.last_updated,
    resource.c.deleted,
    resource.c.body,
)


class _Binds:
    """Collects a query's values; each gets a parameter name (v0, v1, ...) for the SQL.

    The names depend only on the order values are met, so equal shapes have equal names.
    They cannot clash with SQLAlchemy's anonymous names, which end in ``_<n>``.
    """

    __slots__ = ("base_url", "values")

    def __init__(self, base_url: str | None = None) -> None:
        self.values: dict[str, Any] = {}
        self.base_url = base_url  # the server's own base: absolute references under it are local

    def __call__(self, value: Any) -> str:
        name = f"v{len(self.values)}"
        self.values[name] = value
        return name


@dataclass(frozen=True, slots=True)
class Where:
    """A query's filter: its shape (the cache key) and the values of its parameters."""

    shape: Shape
    params: dict[str, Any]

    @property
    def conditions(self) -> tuple[sa.ColumnElement[bool], ...]:
        return conditions(self.shape)


def _split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in _PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def _kind(param: SearchParam) -> str:
    return "token" if param.type == "uri" else param.type


def _clause_kind(clause: Clause) -> str:
    """The index table a clause reads: `reference:identifier` reads the Reference.identifier
    token rows."""
    return "token" if clause.modifier == "identifier" else _kind(clause.param)


def _escape_like(value: str) -> str:
    """What ``autoescape=True`` does to a LIKE operand, done before binding it."""
    escaped = value.replace(_ESCAPE, _ESCAPE + _ESCAPE)
    return escaped.replace("%", _ESCAPE + "%").replace("_", _ESCAPE + "_")


def _bind(name: str) -> sa.BindParameter[Any]:
    # Untyped: comparing it with a column gives it the column's type, as a literal would get.
    return sa.bindparam(name)


def _widen(moment: datetime, days: int) -> datetime:
    """moment +/- days, clamped to the representable range (year 1 and 9999 overflow)."""
    try:
        return moment + timedelta(days=days)
    except OverflowError:
        return MAX_DT if days > 0 else MIN_DT


def _date_range(text: str, name: str) -> tuple[datetime, datetime]:
    try:
        return parse_range(text)
    except ValueError as exc:
        raise InvalidQuery(f"{name}: {exc}") from None


def _number(text: str, name: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise InvalidQuery(f"{name}: {text!r} is not a number") from None
    if not math.isfinite(number):
        raise InvalidQuery(f"{name}: {text!r} is not a finite number")
    return number


# --- step 1: values -> shape (plain Python, runs on every call) ------------------------------


def _plan_token(b: _Binds, value: str) -> Node:
    """One token value: `code`, `system|code`, `system|` or `|code` (no system)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return ("token|", b(code) if code else None, None if system == "" else b(system))
    return ("token", b(value))


def _plan_tokens(b: _Binds, values: tuple[str, ...]) -> Node:
    """OR of token values, as `system = s AND code IN (...)` per system so an index on
    (code, system) serves them all instead of a scan filtered term by term."""
    by_system: dict[str | None, list[str]] = {}
    others: list[Node] = []
    for value in values:
        system, bar, code = value.partition("|") if "|" in value else (None, "", value)
        if bar and (not code or system == ""):
            others.append(_plan_token(b, value))
        else:
            by_system.setdefault(system, []).append(code)
    for system, codes in by_system.items():
        others.append(("codes", b(codes), None if system is None else b(system)))
    return ("or", tuple(others))


def _plan_date(b: _Binds, value: str, name: str) -> Node:
    prefix, text = _split_prefix(value)
    low, high = _date_range(text, name)
    if prefix == "ap":  # overlap with the value widened by a day on each side
        low, high = _widen(low, -1), _widen(high, 1)
    return ("date", prefix, b(low), b(high))


def _plan_quantity(b: _Binds, value: str, name: str) -> Node:
    prefix, text = _split_prefix(value)
    number_text, *unit = text.split("|")
    number = _number(number_text, name)
    decimals = len(number_text.partition(".")[2]) if "." in number_text else 0
    half = 0.5 * 10 ** (-decimals)  # implicit precision: 5.4 means [5.35, 5.45)
    bounds: tuple[str, ...]
    if prefix in ("eq", "ne"):
        bounds = (b(number - half), b(number + half))
    elif prefix == "ap":
        bounds = (b(number * 0.9), b(number * 1.1))
        prefix = "ap" if number >= 0 else "ap-"  # 0.9x is the upper bound of a negative x
    else:
        bounds = (b(number),)
    system = code = None
    if len(unit) == 2:
        system = b(unit[0]) if unit[0] else None
        code = b(unit[1]) if unit[1] else None
    elif unit:
        raise InvalidQuery(f"{name}: use number|system|code")
    return ("quantity", prefix, bounds, system, code)


def _plan_reference(b: _Binds, param: SearchParam, value: str) -> Node:
    url, _, version = value.partition("|")
    target_type, target_id = parse_reference(url)
    if "://" in url:
        # An absolute reference matches itself; under this server's own base it also names a
        # local resource, so it matches the relative form too. Another server's Patient/x is
        # not ours, even with the same type and id.
        ours = b.base_url is not None and url.startswith(b.base_url.rstrip("/") + "/")
        local = (b(target_type), b(target_id)) if ours and target_id is not None else None
        return ("ref_url", b(url), b(version) if version else None, local)
    # Relative references and bare ids name resources on this server, never another server's
    # resource that happens to have the same type and id.
    if target_id is not None:
        return ("ref_local", b(target_type), b(target_id))
    if "/" in url:
        raise InvalidQuery(f"{param.name}: {value!r} is not a reference")
    only = param.targets[0] if len(param.targets) == 1 else None
    return ("ref_id", b(url), only)


def _plan_value(b: _Binds, clause: Clause, value: str) -> Node:
    param = clause.param
    if param.type in ("token", "uri"):
        if param.type == "uri" and clause.modifier == "below":
            return ("like", "token", "code", "startswith", b(_escape_like(value)))
        return _plan_token(b, value)
    if param.type == "string":
        if clause.modifier == "exact":
            return ("exact", b(value))
        needle = b(_escape_like(normalize_string(value)))
        if clause.modifier == "contains":
            return ("like", "string", "value_norm", "contains", needle)
        return ("like", "string", "value_norm", "startswith", needle)
    if param.type == "date":
        return _plan_date(b, value, param.name)
    if param.type == "quantity":
        return _plan_quantity(b, value, param.name)
    return _plan_reference(b, param, value)


def _plan_values(b: _Binds, clause: Clause) -> Node:
    """The OR of a clause's values."""
    if (clause.param.type == "token" and clause.modifier is None) or (
        clause.modifier == "identifier"
    ):
        return _plan_tokens(b, clause.values)
    return ("or", tuple(_plan_value(b, clause, v) for v in clause.values))


def _plan_envelope(b: _Binds, clause: Clause) -> Node:
    """_id and _lastUpdated read the resource row itself."""
    if clause.param.name == "_id":
        return ("ids", b(list(clause.values)))
    ors = []
    for value in clause.values:
        prefix, text = _split_prefix(value)
        low, high = _date_range(text, "_lastUpdated")
        if prefix == "ap":
            low, high = _widen(low, -1), _widen(high, 1)
        ors.append(("updated", prefix, b(low), b(high)))
    return ("or", tuple(ors))


def _plan_clause(b: _Binds, clause: Clause) -> Node:
    name = clause.param.name
    if name in ("_id", "_lastUpdated"):
        if clause.modifier == "missing":
            return ("false",) if clause.values[0] == "true" else ("true",)
        return _plan_envelope(b, clause)
    kind = _clause_kind(clause)
    if clause.modifier == "missing":
        present: Node = ("exists", kind, name, None)
        return ("not", present) if clause.values[0] == "true" else present
    if clause.modifier == "not":
        return ("not", ("exists", kind, name, _plan_values(b, clause)))
    return ("exists", kind, name, _plan_values(b, clause))


def _driver_rank(clause: Clause) -> int | None:
    """How selective a clause is likely to be as the index lookup that drives the query.

    SQLite evaluates a correlated EXISTS once per candidate row, so without a driver every
    search would walk all resources of the type. The driver becomes ``seq IN (index lookup)``
    and the other clauses are checked per candidate; lower rank = more selective.
    """
    param = clause.param
    if clause.modifier in ("missing", "not") or param.name in ("_id", "_lastUpdated"):
        return None
    if param.name == "identifier" or clause.modifier == "identifier":
        return 0
    if param.type == "uri" or (param.type == "token" and all("|" in v for v in clause.values)):
        return 1
    return {"reference": 2, "token": 3, "date": 4}.get(param.type, 5)


def _compartment_dates(query: SearchQuery) -> tuple[Clause, list[Clause]] | None:
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
    return patient, dates


def _plan_driver(b: _Binds, query: SearchQuery) -> tuple[Node | None, list[Clause]]:
    """What drives the query as ``seq IN (index lookup)``, and the clauses left to check."""
    remaining = list(query.clauses)
    compartment = _compartment_dates(query)
    if compartment is not None:
        patient, dates = compartment
        covered = [patient, *dates]
        # The patient clause is implied by the compartment; dates are in the driver.
        remaining = [c for c in remaining if c not in covered]
        bounds = tuple(_plan_value(b, c, c.values[0]) for c in dates)
        name = dates[0].param.name
        node = ("compartment", query.resource_type, name, b(patient.values[0]), bounds)
        return node, remaining
    ranked = [(rank, i) for i, c in enumerate(remaining) if (rank := _driver_rank(c)) is not None]
    if not ranked:
        return None, remaining
    driver = remaining.pop(min(ranked)[1])
    param = driver.param
    node = (
        "driver",
        query.resource_type,
        _clause_kind(driver),
        param.name,
        _plan_values(b, driver),
    )
    return node, remaining


def _plan_access(b: _Binds, groups: tuple[tuple[Clause, ...], ...]) -> Node:
    """The caller's limit: any group whose clauses all hold."""
    if not groups:
        return ("false",)
    if not all(groups):
        return ("true",)
    return ("or", tuple(("and", tuple(_plan_clause(b, c) for c in group)) for group in groups))


def where(query: SearchQuery) -> Where:
    """The query's filter, values validated (400 on a malformed one) in request order."""
    b = _Binds(query.base_url)
    driver, remaining = _plan_driver(b, query)
    nodes = tuple(_plan_clause(b, c) for c in remaining)
    if query.access is not None:
        nodes = (*nodes, _plan_access(b, query.access))
    size = len(b.values) + len(nodes) + (driver is not None)
    return Where((query.resource_type, driver, nodes, size), b.values)


def _per_shape(build: Callable[..., R]) -> Callable[..., R]:
    """`build(shape, ...)` cached per shape (LRU, _CACHE_SIZE entries) when the shape is small
    enough (MAX_CACHED_SHAPE_SIZE), else built for the call (a statement marked uncached)."""
    cached = functools.lru_cache(maxsize=_CACHE_SIZE)(build)

    @functools.wraps(build)
    def get(shape: Shape, *rest: Any) -> R:
        if shape[3] <= MAX_CACHED_SHAPE_SIZE:
            return cached(shape, *rest)
        built = build(shape, *rest)
        return one_off(built) if isinstance(built, sa.Select) else built

    get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    get.cache_info = cached.cache_info  # type: ignore[attr-defined]
    return get


# --- step 2: shape -> SQLAlchemy expressions (once per shape) --------------------------------


def _build(node: Node) -> sa.ColumnElement[bool]:
    built: sa.ColumnElement[bool] = _BUILDERS[node[0]](*node[1:])
    return built


def _build_or(nodes: tuple[Node, ...]) -> sa.ColumnElement[bool]:
    return sa.or_(*(_build(n) for n in nodes))


def _build_and(nodes: tuple[Node, ...]) -> sa.ColumnElement[bool]:
    return sa.and_(*(_build(n) for n in nodes))


def _build_not(node: Node) -> sa.ColumnElement[bool]:
    return sa.not_(_build(node))


def _build_exists(kind: str, name: str, condition: Node | None) -> sa.ColumnElement[bool]:
    """A per-candidate check. It leaves res_type out on purpose: every value index leads
    with res_type, so the only index it can use is the one keyed by the resource itself."""
    table = INDEX_TABLES[kind]
    where = [table.c.resource_seq == resource.c.seq, table.c.param == name]
    if condition is not None:
        where.append(_build(condition))
    return sa.exists().where(*where)


def _build_token(code: str) -> sa.ColumnElement[bool]:
    return INDEX_TABLES["token"].c.code == _bind(code)


def _build_token_system(code: str | None, system: str | None) -> sa.ColumnElement[bool]:
    table = INDEX_TABLES["token"]
    parts = []
    if code is not None:
        parts.append(table.c.code == _bind(code))
    parts.append(table.c.system.is_(None) if system is None else table.c.system == _bind(system))
    return sa.and_(*parts)


def _build_codes(codes: str, system: str | None) -> sa.ColumnElement[bool]:
    table = INDEX_TABLES["token"]
    in_codes = table.c.code.in_(sa.bindparam(codes, expanding=True))
    return in_codes if system is None else sa.and_(in_codes, table.c.system == _bind(system))


def _build_like(kind: str, column: str, how: str, value: str) -> sa.ColumnElement[bool]:
    like = getattr(INDEX_TABLES[kind].c[column], how)
    matched: sa.ColumnElement[bool] = like(_bind(value), escape=_ESCAPE)
    return matched


def _build_exact(value: str) -> sa.ColumnElement[bool]:
    return INDEX_TABLES["string"].c.value_exact == _bind(value)


def _build_date(prefix: str, low_name: str, high_name: str) -> sa.ColumnElement[bool]:
    table = INDEX_TABLES["date"]
    lo, hi = table.c.low, table.c.high
    low, high = _bind(low_name), _bind(high_name)
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
    # ap: low and high are already widened by a day.
    return sa.and_(lo <= high, hi >= low)


def _build_quantity(
    prefix: str, bounds: tuple[str, ...], system: str | None, code: str | None
) -> sa.ColumnElement[bool]:
    table = INDEX_TABLES["quantity"]
    parts = [_quantity_bounds(table.c.value, prefix, *(_bind(name) for name in bounds))]
    if system is not None:
        parts.append(table.c.system == _bind(system))
    if code is not None:
        parts.append(table.c.code == _bind(code))
    return sa.and_(*parts)


def _quantity_bounds(
    v: sa.ColumnElement[Any], prefix: str, x: sa.BindParameter[Any], y: Any = None
) -> sa.ColumnElement[bool]:
    """x, y: number -/+ half its precision (eq, ne), number * 0.9 and * 1.1 (ap)."""
    if prefix == "eq":
        return sa.and_(v >= x, v < y)
    if prefix == "ne":
        return sa.or_(v < x, v >= y)
    if prefix in ("gt", "sa"):
        return v > x
    if prefix in ("lt", "eb"):
        return v < x
    if prefix == "ge":
        return v >= x
    if prefix == "le":
        return v <= x
    if prefix == "ap":
        return sa.and_(v >= x, v <= y)
    return sa.and_(v <= x, v >= y)  # ap of a negative number


def _build_ref_url(
    url: str, version: str | None, local: tuple[str, str] | None
) -> sa.ColumnElement[bool]:
    table = INDEX_TABLES["reference"]
    versioned = [table.c.target_version == _bind(version)] if version is not None else []
    parts = [table.c.target_url == _bind(url), *versioned]
    if local is not None:
        same_here = sa.and_(
            table.c.target_url.is_(None),
            table.c.target_type == _bind(local[0]),
            table.c.target_id == _bind(local[1]),
            *versioned,
        )
        return sa.or_(sa.and_(*parts), same_here)
    return sa.and_(*parts)


def _build_ref_local(target_type: str, target_id: str) -> sa.ColumnElement[bool]:
    table = INDEX_TABLES["reference"]
    return sa.and_(
        table.c.target_url.is_(None),
        table.c.target_type == _bind(target_type),
        table.c.target_id == _bind(target_id),
    )


def _build_ref_id(target_id: str, only_type: str | None) -> sa.ColumnElement[bool]:
    """A bare id; the target type too when the parameter allows only one."""
    table = INDEX_TABLES["reference"]
    condition = sa.and_(table.c.target_url.is_(None), table.c.target_id == _bind(target_id))
    if only_type is not None:
        condition = sa.and_(condition, table.c.target_type == only_type)
    return condition


def _build_ids(ids: str) -> sa.ColumnElement[bool]:
    return resource.c.res_id.in_(sa.bindparam(ids, expanding=True))


def _build_updated(prefix: str, low_name: str, high_name: str) -> sa.ColumnElement[bool]:
    col = resource.c.last_updated
    low, high = _bind(low_name), _bind(high_name)
    if prefix in ("eq", "ap"):  # ap: already widened by a day
        return sa.and_(col >= low, col <= high)
    if prefix == "ne":
        return sa.or_(col < low, col > high)
    if prefix in ("gt", "sa"):
        return col > high
    if prefix in ("lt", "eb"):
        return col < low
    if prefix == "ge":
        return col >= low
    return col <= high  # le


def _build_driver(
    resource_type: str, kind: str, name: str, condition: Node
) -> sa.ColumnElement[bool]:
    table = INDEX_TABLES[kind]
    lookup = sa.select(table.c.resource_seq).where(
        table.c.res_type == resource_type, table.c.param == name, _build(condition)
    )
    return resource.c.seq.in_(lookup)


def _build_compartment(
    resource_type: str, name: str, patient: str, bounds: tuple[Node, ...]
) -> sa.ColumnElement[bool]:
    table = INDEX_TABLES["date"]
    lookup = sa.select(table.c.resource_seq).where(
        table.c.res_type == resource_type,
        table.c.param == name,
        table.c.compartment == _bind(patient),
        *(_build(node) for node in bounds),
    )
    return resource.c.seq.in_(lookup)


_BUILDERS: dict[str, Callable[..., Any]] = {
    "true": sa.true,
    "false": sa.false,
    "or": _build_or,
    "and": _build_and,
    "not": _build_not,
    "exists": _build_exists,
    "token": _build_token,
    "token|": _build_token_system,
    "codes": _build_codes,
    "like": _build_like,
    "exact": _build_exact,
    "date": _build_date,
    "quantity": _build_quantity,
    "ref_url": _build_ref_url,
    "ref_local": _build_ref_local,
    "ref_id": _build_ref_id,
    "ids": _build_ids,
    "updated": _build_updated,
    "driver": _build_driver,
    "compartment": _build_compartment,
}


@_per_shape
def conditions(shape: Shape) -> tuple[sa.ColumnElement[bool], ...]:
    """The WHERE conditions of a shape, with a bindparam for each of its values."""
    resource_type, driver, nodes, _size = shape
    built: list[sa.ColumnElement[bool]] = [resource.c.deleted.is_(False)]
    if driver is not None:
        lookup = _build(driver)
        # `res_type || ''` keeps SQLite from walking the type index instead of looking the
        # driver's rows up by primary key; PostgreSQL plans it the same either way.
        built += [lookup, resource.c.res_type.concat("") == resource_type]
    else:
        built.append(resource.c.res_type == resource_type)
    built.extend(_build(node) for node in nodes)
    return tuple(built)


# --- ordering and keyset paging -------------------------------------------------------------
# Pages are cut by the sort key of the last row seen (a cursor), not by an offset, so rows
# written between two page requests never shift, skip or repeat the rows of the next page.

SortKey = tuple[tuple[str, str, bool], ...]


def sort_key(query: SearchQuery) -> SortKey:
    """What the sort columns depend on (the cache key of columns_for)."""
    return tuple((param.name, _kind(param), descending) for param, descending in query.sort)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def columns_for(key: SortKey) -> Columns:
    """The sort columns, then seq (a unique tie-break), each with whether it descends."""
    columns: list[tuple[sa.ColumnElement[Any], bool]] = []
    for name, kind, descending in key:
        if name == "_lastUpdated":
            columns.append((resource.c.last_updated, descending))
        elif name == "_id":
            columns.append((resource.c.res_id, descending))
        else:
            columns.append((_sort_value(name, kind, descending), descending))
    columns.append((resource.c.seq, False))
    return tuple(columns)


def _sort_value(name: str, kind: str, descending: bool) -> sa.ColumnElement[Any]:
    table = INDEX_TABLES[kind]
    column_name, missing = {
        "date": ("high" if descending else "low", MIN_DT if descending else MAX_DT),
        "string": ("value_norm", "" if descending else "\uffff"),
        "token": ("code", "" if descending else "\uffff"),
        "quantity": ("value", -1e308 if descending else 1e308),
    }[kind]
    column = table.c[column_name]
    aggregate = sa.func.max(column) if descending else sa.func.min(column)
    inner = (
        sa.select(aggregate)
        .where(table.c.resource_seq == resource.c.seq, table.c.param == name)
        .scalar_subquery()
    )
    # Resources without a value sort last in both directions.
    return sa.func.coalesce(inner, sa.literal(missing, type_=column.type))


def encode_cursor(values: list[Any], backwards: bool) -> str:
    encoded = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = orjson.dumps({"k": encoded, "b": backwards})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, columns: Columns) -> tuple[list[Any], bool]:
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
        raise InvalidQuery("Invalid or outdated paging cursor") from None


def after(columns: Columns, values: list[Any], backwards: bool) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor in sort order (before it when going backwards)."""
    ors = []
    for i, (column, descending) in enumerate(columns):
        equal = [columns[j][0] == values[j] for j in range(i)]
        later = (column < values[i]) if (descending != backwards) else (column > values[i])
        ors.append(sa.and_(*equal, later))
    return sa.or_(*ors)


def order_by(columns: Columns, backwards: bool) -> list[sa.ColumnElement[Any]]:
    return [c.desc() if (d != backwards) else c.asc() for c, d in columns]


# --- whole statements, built once per shape ---------------------------------------------------

LIMIT = "row_limit"  # the parameter name of a statement's LIMIT


def _limit() -> sa.BindParameter[int]:
    return sa.bindparam(LIMIT, type_=sa.Integer)


@_per_shape
def page_statement(shape: Shape, key: SortKey) -> sa.Select[Any]:
    """A search's first page: the resource and its sort keys (k0, k1, ...) in sort order."""
    columns = columns_for(key)
    return _page(conditions(shape), columns, False)


def cursor_page_statement(
    where: Where, columns: Columns, values: list[Any], backwards: bool
) -> sa.Select[Any]:
    """A later page, cut at a cursor's values (paging is rare: not cached)."""
    filters = (*where.conditions, after(columns, values, backwards))
    return one_off(_page(filters, columns, backwards))


def _page(
    filters: Sequence[sa.ColumnElement[bool]], columns: Columns, backwards: bool
) -> sa.Select[Any]:
    labels = [col.label(f"k{i}") for i, (col, _) in enumerate(columns)]
    return (
        sa.select(*STORED_COLUMNS, *labels)
        .where(*filters)
        .order_by(*order_by(columns, backwards))
        .limit(_limit())
    )


@_per_shape
def ids_statement(shape: Shape) -> sa.Select[Any]:
    return sa.select(resource.c.res_id).where(*conditions(shape)).limit(_limit())


@_per_shape
def count_statement(shape: Shape) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(resource).where(*conditions(shape))
