"""Does a CarePlan that instantiates the Flexion in Lying protocol conform to its PlanDefinition?

Pure functions over plain FHIR R4 JSON dicts: no I/O, no framework imports. Everything the check
knows about the protocol (canonical, version, activities, levels, doses) is read from the given
PlanDefinition, so a clinic's own published version is checked against itself.

Checked:
- ``CarePlan.instantiatesCanonical`` names the PlanDefinition as ``url|version`` with its version;
- the plan has a flexion activity and an Extension in Lying activity, and while a flexion activity
  is live an Extension in Lying activity is live too (SRC: "must always be followed immediately
  by a Cobra");
- every dose the plan states (sessions per day, repetitions per session) fits the level's dose.

An activity is either ``detail`` with ``instantiatesCanonical``, or a ``reference`` to a contained
ServiceRequest (``#id``) whose ``instantiatesCanonical`` names the ActivityDefinition. References
to resources outside the CarePlan cannot be resolved here and are not counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from service.protocol.codes import (
    CAREPLAN_CS,
    EXT_PROTOCOL_LEVEL,
    EXT_REPETITIONS_PER_SESSION,
    UCUM,
)

JSON = Mapping[str, Any]


@dataclass(frozen=True)
class Problem:
    """One conformance finding; ``expression`` is a FHIRPath-like path into the CarePlan."""

    expression: str
    message: str


# ---------------------------------------------------------------- small helpers

# Exact arithmetic: 3/day and 21/wk must compare equal, and JSON floats must not round.
_DAYS_PER_UNIT: dict[str, Fraction] = {
    "s": Fraction(1, 86400),
    "min": Fraction(1, 1440),
    "h": Fraction(1, 24),
    "d": Fraction(1),
    "wk": Fraction(7),
}
# Timing.code abbreviations (v3 GTSAbbreviation) that fix a daily frequency.
_TIMING_CODE_PER_DAY: dict[str, Fraction] = {
    "QD": Fraction(1),
    "AM": Fraction(1),
    "PM": Fraction(1),
    "BID": Fraction(2),
    "TID": Fraction(3),
    "QID": Fraction(4),
    "QOD": Fraction(1, 2),
}
# Statuses after which an activity no longer prescribes anything.
_ENDED_DETAIL_STATUS = {"completed", "cancelled", "stopped"}
_ENDED_REQUEST_STATUS = {"completed", "revoked"}
_ERROR_STATUS = "entered-in-error"


def _num(value: Any) -> Fraction | None:
    # bool is an int in Python but never a FHIR number.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return None


def _fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


def _fmt_range(lo: Fraction, hi: Fraction) -> str:
    return _fmt(lo) if lo == hi else f"{_fmt(lo)}-{_fmt(hi)}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> JSON:
    return value if isinstance(value, Mapping) else {}


def split_canonical(canonical: str) -> tuple[str, str | None]:
    """``url|version#fragment`` -> (url, version or None)."""
    base = canonical.split("#", 1)[0]
    url, sep, version = base.partition("|")
    return url, (version or None) if sep else None


# ---------------------------------------------------------------- what the PlanDefinition says


@dataclass(frozen=True)
class _Dose:
    """A level action's dose; None where the PlanDefinition states nothing."""

    per_day: tuple[Fraction, Fraction] | None
    repetitions: tuple[Fraction, Fraction] | None

    def describe(self) -> str:
        parts = []
        if self.repetitions is not None:
            parts.append(f"{_fmt_range(*self.repetitions)} repetitions per session")
        if self.per_day is not None:
            parts.append(f"{_fmt_range(*self.per_day)} sessions per day")
        return ", ".join(parts) or "no stated dose"


@dataclass(frozen=True)
class _ActivitySpec:
    url: str
    version: str | None
    title: str
    dose: _Dose


@dataclass(frozen=True)
class _Level:
    number: int
    flexion: _ActivitySpec
    extension: _ActivitySpec | None


@dataclass(frozen=True)
class _Protocol:
    url: str
    version: str | None
    levels: dict[int, _Level]

    @property
    def flexion_urls(self) -> set[str]:
        return {level.flexion.url for level in self.levels.values()}

    @property
    def extension_urls(self) -> set[str]:
        return {lv.extension.url for lv in self.levels.values() if lv.extension is not None}

    def versions_of(self, url: str) -> set[str]:
        found: set[str] = set()
        for level in self.levels.values():
            for spec in (level.flexion, level.extension):
                if spec is not None and spec.url == url and spec.version is not None:
                    found.add(spec.version)
        return found


def _extension_value(element: JSON, url: str, key: str) -> Any:
    for ext in _list(element.get("extension")):
        if isinstance(ext, Mapping) and ext.get("url") == url and key in ext:
            return ext[key]
    return None


def _range_of(value: Any) -> tuple[Fraction, Fraction] | None:
    rng = _dict(value)
    lo = _num(_dict(rng.get("low")).get("value"))
    hi = _num(_dict(rng.get("high")).get("value"))
    if lo is None and hi is None:
        return None
    return (lo if lo is not None else hi, hi if hi is not None else lo)  # type: ignore[return-value]


def _walk_actions(actions: Any) -> Iterator[JSON]:
    for action in _list(actions):
        if isinstance(action, Mapping):
            yield action
            yield from _walk_actions(action.get("action"))


def _per_day_of_timing(timing: JSON) -> tuple[Fraction, Fraction] | None:
    """Sessions per day a Timing states, as (fewest, most); None when it states no rate."""
    repeat = _dict(timing.get("repeat"))
    frequency = _num(repeat.get("frequency"))
    period = _num(repeat.get("period"))
    unit = repeat.get("periodUnit")
    if frequency is None or period is None or unit not in _DAYS_PER_UNIT or period <= 0:
        code = _dict(timing.get("code"))
        for coding in _list(code.get("coding")):
            rate = _TIMING_CODE_PER_DAY.get(_dict(coding).get("code", ""))
            if rate is not None and not repeat:
                return rate, rate
        return None
    frequency_max = _num(repeat.get("frequencyMax")) or frequency
    period_max = _num(repeat.get("periodMax")) or period
    days = _DAYS_PER_UNIT[unit]
    return frequency / (period_max * days), frequency_max / (period * days)


def _activity_spec(action: JSON, group: JSON) -> _ActivitySpec | None:
    canonical = action.get("definitionCanonical")
    if not isinstance(canonical, str):
        return None
    url, version = split_canonical(canonical)
    timing = _dict(action.get("timingTiming")) or _dict(group.get("timingTiming"))
    reps = _range_of(_extension_value(action, EXT_REPETITIONS_PER_SESSION, "valueRange"))
    return _ActivitySpec(
        url=url,
        version=version,
        title=str(action.get("title") or url.rsplit("/", 1)[-1]),
        dose=_Dose(per_day=_per_day_of_timing(timing) if timing else None, repetitions=reps),
    )


def _read_protocol(plan_definition: JSON) -> _Protocol:
    levels: dict[int, _Level] = {}
    for group in _walk_actions(plan_definition.get("action")):
        number = _extension_value(group, EXT_PROTOCOL_LEVEL, "valueInteger")
        if not isinstance(number, int) or isinstance(number, bool):
            continue
        children = [c for c in _list(group.get("action")) if isinstance(c, Mapping)]
        specs = [(c, _activity_spec(c, group)) for c in children]
        # The extension action is the one that runs after another action ends (relatedAction).
        extension = next(
            (
                s
                for c, s in specs
                if s is not None
                and any(
                    _dict(r).get("relationship") == "after-end"
                    for r in _list(c.get("relatedAction"))
                )
            ),
            None,
        )
        flexion = next((s for _, s in specs if s is not None and s is not extension), None)
        if flexion is not None:
            levels[number] = _Level(number=number, flexion=flexion, extension=extension)
    url, version = str(plan_definition.get("url", "")), plan_definition.get("version")
    return _Protocol(url=url, version=version if isinstance(version, str) else None, levels=levels)


# ---------------------------------------------------------------- what the CarePlan says


@dataclass
class _Prescription:
    """One activity of the CarePlan, from its detail or its contained ServiceRequest."""

    path: str  # FHIRPath-ish path of the element holding instantiatesCanonical
    canonicals: list[tuple[int, str, str | None]]
    status: str | None
    ended_statuses: set[str]
    levels: list[tuple[str, int | str]] = field(default_factory=list)  # (path, level marker)
    timings: list[tuple[str, JSON]] = field(default_factory=list)
    rep_values: list[tuple[str, JSON]] = field(default_factory=list)  # Quantity-like
    rep_ranges: list[tuple[str, JSON]] = field(default_factory=list)  # Range-like

    @property
    def live(self) -> bool:
        return self.status not in self.ended_statuses and self.status != _ERROR_STATUS


def _level_markers(element: JSON, path: str) -> Iterator[tuple[str, int | str]]:
    for i, ext in enumerate(_list(element.get("extension"))):
        ext = _dict(ext)
        if ext.get("url") == EXT_PROTOCOL_LEVEL:
            value = ext.get("valueInteger")
            yield f"{path}.extension[{i}]", value if isinstance(value, int) else str(value)
    for key in ("code", "category"):
        concepts = element.get(key)
        concepts = concepts if isinstance(concepts, list) else [concepts]
        for j, concept in enumerate(concepts):
            for coding in _list(_dict(concept).get("coding")):
                coding = _dict(coding)
                code = coding.get("code")
                if (
                    coding.get("system") == CAREPLAN_CS
                    and isinstance(code, str)
                    and code.startswith("level-")
                ):
                    where = f"{path}.{key}" + (f"[{j}]" if key == "category" else "")
                    number = code.removeprefix("level-")
                    # ASCII digits only ("²".isdigit() holds), and few: int() refuses more
                    # than 4,300 digits, and no protocol has that many levels.
                    numeric = number.isascii() and number.isdigit() and len(number) <= 9
                    yield where, int(number) if numeric else code


def _rep_extensions(element: JSON, path: str) -> Iterator[tuple[str, JSON]]:
    for i, ext in enumerate(_list(element.get("extension"))):
        ext = _dict(ext)
        if ext.get("url") == EXT_REPETITIONS_PER_SESSION and "valueRange" in ext:
            yield f"{path}.extension[{i}].valueRange", _dict(ext["valueRange"])


def _canonicals(element: JSON) -> list[tuple[int, str, str | None]]:
    out = []
    for k, canonical in enumerate(_list(element.get("instantiatesCanonical"))):
        if isinstance(canonical, str):
            url, version = split_canonical(canonical)
            out.append((k, url, version))
    return out


def _prescriptions(care_plan: JSON, problems: list[Problem]) -> Iterator[tuple[int, _Prescription]]:
    contained = {
        str(r.get("id")): (j, r)
        for j, r in enumerate(_list(care_plan.get("contained")))
        if isinstance(r, Mapping) and r.get("id")
    }
    for i, activity in enumerate(_list(care_plan.get("activity"))):
        activity = _dict(activity)
        a_path = f"CarePlan.activity[{i}]"
        detail = activity.get("detail")
        if isinstance(detail, Mapping):
            d_path = f"{a_path}.detail"
            rx = _Prescription(
                path=d_path,
                canonicals=_canonicals(detail),
                status=detail.get("status"),
                ended_statuses=_ENDED_DETAIL_STATUS,
            )
            rx.levels += [*_level_markers(activity, a_path), *_level_markers(detail, d_path)]
            if isinstance(detail.get("scheduledTiming"), Mapping):
                rx.timings.append((f"{d_path}.scheduledTiming", detail["scheduledTiming"]))
            if isinstance(detail.get("quantity"), Mapping):
                rx.rep_values.append((f"{d_path}.quantity", detail["quantity"]))
            rx.rep_ranges += [*_rep_extensions(activity, a_path), *_rep_extensions(detail, d_path)]
            yield i, rx
        reference = _dict(activity.get("reference")).get("reference")
        if not isinstance(reference, str) or not reference.startswith("#"):
            continue  # external references cannot be resolved without I/O
        found = contained.get(reference[1:])
        if found is None:
            problems.append(
                Problem(
                    f"{a_path}.reference",
                    f"'{reference}' names no contained resource of this CarePlan",
                )
            )
            continue
        j, request = found
        r_path = f"CarePlan.contained[{j}]"
        if request.get("resourceType") != "ServiceRequest":
            problems.append(
                Problem(
                    f"{a_path}.reference",
                    f"'{reference}' is a {request.get('resourceType')}, not a ServiceRequest",
                )
            )
            continue
        rx = _Prescription(
            path=r_path,
            canonicals=_canonicals(request),
            status=request.get("status"),
            ended_statuses=_ENDED_REQUEST_STATUS,
        )
        rx.levels += [*_level_markers(activity, a_path), *_level_markers(request, r_path)]
        if isinstance(request.get("occurrenceTiming"), Mapping):
            rx.timings.append((f"{r_path}.occurrenceTiming", request["occurrenceTiming"]))
        if isinstance(request.get("quantityQuantity"), Mapping):
            rx.rep_values.append((f"{r_path}.quantityQuantity", request["quantityQuantity"]))
        if isinstance(request.get("quantityRange"), Mapping):
            rx.rep_ranges.append((f"{r_path}.quantityRange", request["quantityRange"]))
        rx.rep_ranges += [*_rep_extensions(activity, a_path), *_rep_extensions(request, r_path)]
        yield i, rx


# ---------------------------------------------------------------- dose checks


def _check_timing(
    path: str, timing: JSON, candidates: Sequence[tuple[int, _ActivitySpec]]
) -> tuple[set[int], list[Problem]]:
    """Levels whose sessions-per-day this Timing fits, and the problem if it fits none."""
    repeat = _dict(timing.get("repeat"))
    unit = repeat.get("periodUnit")
    if unit is not None and unit not in _DAYS_PER_UNIT:
        return set(), [
            Problem(
                f"{path}.repeat.periodUnit",
                f"period unit '{unit}' has no fixed length in days; state sessions per day",
            )
        ]
    stated = _per_day_of_timing(timing)
    allowed = [(n, s.dose.per_day) for n, s in candidates]
    if stated is None or all(a is None for _, a in allowed):
        return {n for n, _ in candidates}, []
    lo, hi = stated
    fits = {n for n, a in allowed if a is None or (a[0] <= lo and hi <= a[1])}
    if fits:
        return fits, []
    bounds = [a for _, a in allowed if a is not None]
    # Point at the bound that is off: too few sessions is frequency, too many frequencyMax.
    if "repeat" not in timing:
        where = f"{path}.code"
    elif lo < min(b[0] for b in bounds) or "frequencyMax" not in repeat:
        where = f"{path}.repeat.frequency"
    else:
        where = f"{path}.repeat.frequencyMax"
    wanted = " or ".join(sorted({_fmt_range(*b) for b in bounds}))
    return set(), [
        Problem(
            where,
            f"{_fmt_range(lo, hi)} sessions per day contradicts the protocol's {wanted} "
            f"sessions per day",
        )
    ]


def _check_repetitions(
    path: str, lo: Fraction, hi: Fraction, candidates: Sequence[tuple[int, _ActivitySpec]]
) -> tuple[set[int], list[Problem]]:
    allowed = [(n, s.dose.repetitions) for n, s in candidates]
    if all(a is None for _, a in allowed):
        return {n for n, _ in candidates}, []
    fits = {n for n, a in allowed if a is None or (a[0] <= lo and hi <= a[1])}
    if fits:
        return fits, []
    wanted = " or ".join(sorted({_fmt_range(*a) for _, a in allowed if a is not None}))
    return set(), [
        Problem(
            path,
            f"{_fmt_range(lo, hi)} repetitions per session contradicts the protocol's {wanted} "
            f"repetitions per session",
        )
    ]


def _quantity_as_repetitions(path: str, quantity: JSON) -> tuple[Fraction | None, list[Problem]]:
    value = _num(quantity.get("value"))
    code = quantity.get("code")
    # A count is unitless in UCUM ("1" or an annotation like "{repetitions}").
    is_count = (
        not isinstance(code, str) or code == "1" or (code.startswith("{") and code.endswith("}"))
    )
    if quantity.get("system") == UCUM and not is_count:
        return None, [Problem(path, f"unit '{code}' is not a count of repetitions per session")]
    return value, []


def _check_dose(
    rx: _Prescription, candidates: Sequence[tuple[int, _ActivitySpec]]
) -> list[Problem]:
    problems: list[Problem] = []
    fitting: list[set[int]] = []
    for path, timing in rx.timings:
        fits, found = _check_timing(path, timing, candidates)
        problems += found
        fitting.append(fits)
    for path, quantity in rx.rep_values:
        value, found = _quantity_as_repetitions(path, quantity)
        problems += found
        if value is not None:
            fits, found = _check_repetitions(path, value, value, candidates)
            problems += found
            fitting.append(fits)
    for path, rng in rx.rep_ranges:
        stated = _range_of(rng)
        if stated is None:
            continue
        if stated[0] > stated[1]:
            problems.append(Problem(path, "low is above high"))
            continue
        fits, found = _check_repetitions(path, stated[0], stated[1], candidates)
        problems += found
        fitting.append(fits)
    # Each stated dose may fit some level, yet together fit none (e.g. level 1 and level 2 doses).
    if not problems and fitting and not set.intersection(*fitting):
        problems.append(
            Problem(rx.path, "the stated doses belong to different levels of the protocol")
        )
    return problems


# ---------------------------------------------------------------- the check


def _check_plan_definition_canonical(care_plan: JSON, protocol: _Protocol) -> list[Problem]:
    wanted = f"{protocol.url}|{protocol.version}" if protocol.version else protocol.url
    matches = [(k, version) for k, url, version in _canonicals(care_plan) if url == protocol.url]
    if not matches:
        return [
            Problem("CarePlan.instantiatesCanonical", f"does not name the PlanDefinition {wanted}")
        ]
    problems = []
    for k, version in matches:
        path = f"CarePlan.instantiatesCanonical[{k}]"
        if version is None:
            problems.append(Problem(path, f"names no version; it must be {wanted}"))
        elif protocol.version is not None and version != protocol.version:
            problems.append(
                Problem(
                    path,
                    f"names PlanDefinition version {version}; this protocol is version "
                    f"{protocol.version}",
                )
            )
    return problems


def _check_prescription(rx: _Prescription, protocol: _Protocol) -> tuple[str | None, list[Problem]]:
    """What kind of protocol activity this is (flexion, extension or None) and its problems."""
    kinds: set[str] = set()
    problems: list[Problem] = []
    candidates: list[tuple[int, _ActivitySpec]] = []
    for k, url, version in rx.canonicals:
        if url in protocol.flexion_urls:
            kinds.add("flexion")
            candidates += [
                (n, lv.flexion)
                for n, lv in sorted(protocol.levels.items())
                if lv.flexion.url == url
            ]
        elif url in protocol.extension_urls:
            kinds.add("extension")
            candidates += [
                (n, lv.extension)
                for n, lv in sorted(protocol.levels.items())
                if lv.extension is not None and lv.extension.url == url
            ]
        else:
            continue
        known = protocol.versions_of(url)
        if version is not None and known and version not in known:
            problems.append(
                Problem(
                    f"{rx.path}.instantiatesCanonical[{k}]",
                    f"names {url} version {version}; the protocol uses version "
                    f"{' or '.join(sorted(known))}",
                )
            )
    if not kinds:
        return None, problems
    # A level marker narrows the dose to that level's; it must be a level the protocol has.
    marked: set[int] = set()
    for path, level in rx.levels:
        if isinstance(level, int) and level in protocol.levels:
            marked.add(level)
        else:
            problems.append(Problem(path, f"'{level}' is not a level of this protocol"))
    if len(marked) > 1:
        problems.append(Problem(rx.path, f"names more than one level: {sorted(marked)}"))
    elif marked:
        level = next(iter(marked))
        narrowed = [(n, s) for n, s in candidates if n == level]
        if not narrowed:
            where = next(path for path, marker in rx.levels if marker == level)
            title = protocol.levels[level].flexion.title
            problems.append(Problem(where, f"level {level} prescribes {title}, not this activity"))
        candidates = narrowed
    if candidates:
        problems += _check_dose(rx, candidates)
    kind = "flexion" if "flexion" in kinds else "extension"
    return kind, problems


def check_care_plan(care_plan: dict[str, Any], plan_definition: dict[str, Any]) -> list[Problem]:
    """Problems of a CarePlan that instantiates this protocol; [] when it conforms."""
    protocol = _read_protocol(plan_definition)
    problems = _check_plan_definition_canonical(care_plan, protocol)
    flexion: list[_Prescription] = []
    extension: list[_Prescription] = []
    for _, rx in _prescriptions(care_plan, problems):
        if rx.status == _ERROR_STATUS:
            continue
        kind, found = _check_prescription(rx, protocol)
        problems += found
        if kind == "flexion":
            flexion.append(rx)
        elif kind == "extension":
            extension.append(rx)
    if not flexion:
        problems.append(
            Problem("CarePlan.activity", "has no flexion activity of the protocol (any level)")
        )
    if not extension:
        problems.append(
            Problem(
                "CarePlan.activity",
                "has no Extension in Lying activity; every flexion session must be followed "
                "immediately by a Cobra (Extension in Lying)",
            )
        )
    elif any(rx.live for rx in flexion) and not any(rx.live for rx in extension):
        problems.append(
            Problem(
                "CarePlan.activity",
                "a flexion activity is live but no Extension in Lying activity is; every flexion "
                "session must be followed immediately by a Cobra (Extension in Lying)",
            )
        )
    return problems
