"""The validator's walk refuses whatever the fhir.resources R4B models refuse.

The request path validates with one walk over the raw JSON (service/fhir/structure.py) instead
of building the R4B models, which cost seven times as much. The models stay the oracle here, on
inputs nobody on the team wrote: every official R4 example (npm hl7.fhir.r4.examples), and
mutations of them that put one malformed value into one element at a time.

The walk may refuse more than the models: nulls, empty strings and containers, numbers written
as strings, codes outside a required binding, whitespace in ids and URIs, ext-1, obs-6 and the
narrative rules txt-1 and txt-2 (service/fhir/narrative.py).
Those checks are its own and are tested in tests/api/test_bad_input.py.
"""

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from service.fhir.structure import check_resource
from tests.support.r4_examples import EXAMPLES_DIR, example_files

Json = dict[str, Any]

# Malformed values for the primitive types, each wrong in one way. A string leaf gets each
# of the strings, a number leaf each of the numbers (the JSON kind itself is checked elsewhere).
BAD_STRINGS = [
    "2020-13-01",  # month 13 (date, dateTime)
    "2019-02-29",  # not a leap year
    "2020-01-01T10:00:00",  # a time without a zone
    "2020-01-01T24:00:00Z",  # hour 24
    "2020-01-01 10:00:00Z",  # a space, not T
    "25:00:00",  # time
    "10:00",  # time without seconds
    "urn:oid:1.2.x",  # oid
    "urn:uuid:not-a-uuid",  # uuid
    "a\tb",  # whitespace inside an id, code or uri
    " leading",
    "trailing ",
    "two  spaces",
    "id_with_underscore",
    "x" * 65,  # id longer than 64
    "@@@",  # base64, id
    "+",
    "-0",
]
BAD_NUMBERS = [-1, 0, 2**31, -(2**31) - 1, 1.5, 10**20]


def _models_accept(resource: Json) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except Exception:  # the oracle: any refusal counts
        return False
    return True


def _walk_accepts(resource: Json) -> bool:
    return not check_resource(resource)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every string or number in a JSON document, in document order."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "resourceType":
                yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield path, value


def _replaced(resource: Json, path: tuple[Any, ...], new: Any) -> Json:
    mutated = copy.deepcopy(resource)
    target: Any = mutated
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return mutated


# The specification's own definition Bundles (all its StructureDefinitions, ValueSets, ...)
# are 0.3-30 MB each and took three quarters of this file's time; what they hold is also
# among the single examples. 48 of 5,306 files are left out.
MAX_EXAMPLE_BYTES = 300_000


def _all_examples() -> list[tuple[str, Json]]:
    example_files("Patient")  # installs the npm package when it is missing
    out = []
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        if path.stat().st_size > MAX_EXAMPLE_BYTES:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("resourceType"), str):
            out.append((path.name, data))
    return out


@pytest.fixture(scope="module")
def examples() -> list[tuple[str, Json, bool]]:
    """(file name, resource, whether the models accept it) for every official example."""
    found = [(name, data, _models_accept(data)) for name, data in _all_examples()]
    assert len(found) > 2000, f"only {len(found)} official examples found"
    return found


def test_every_example_the_models_refuse_the_walk_refuses(examples):
    refused = [(name, resource) for name, resource, ok in examples if not ok]
    missed = [name for name, resource in refused if _walk_accepts(resource)]
    assert refused, "the oracle refuses no example: it is not checking anything"
    assert not missed, f"the models refuse, the walk accepts: {missed[:20]}"


def test_the_walk_accepts_the_examples_the_models_accept(examples):
    """Stricter, not different: the examples it refuses beyond the models are few, and each
    refusal is one of its own documented checks."""
    own_checks = ("structure", "code-invalid", "invariant", "required")
    extra = []
    for name, resource, ok in examples:
        issues = check_resource(resource) if ok else []
        if issues:
            extra.append(name)
            assert all(i.code in own_checks for i in issues), (name, issues)
    assert len(extra) < 0.05 * len(examples), extra


def _mutation_sample(examples: list[tuple[str, Json, bool]]) -> list[tuple[str, Json]]:
    """One accepted example per resource type, the first of under 20 kB by file name."""
    seen: dict[str, tuple[str, Json]] = {}
    for name, resource, ok in examples:
        if ok and (EXAMPLES_DIR / name).stat().st_size < 20_000:
            seen.setdefault(resource["resourceType"], (name, resource))
    return sorted(seen.values(), key=lambda item: item[0])


def test_malformed_values_the_models_refuse_the_walk_refuses(examples):
    missed = []
    tried = refused = 0
    for name, resource in _mutation_sample(examples):
        # Every fourth leaf, at most 24 a resource, keeps the run short and still reaches
        # every primitive type (the refusal counts below say so).
        for path, value in list(_leaves(resource))[::4][:24]:
            candidates = BAD_STRINGS if isinstance(value, str) else BAD_NUMBERS
            for bad in candidates:
                mutated = _replaced(resource, path, bad)
                tried += 1
                if not _models_accept(mutated):
                    refused += 1
                    if _walk_accepts(mutated):
                        missed.append((name, path, bad))
    print(f"{tried} mutations, {refused} refused by the models")
    assert tried > 5_000 and refused > 1_000, (tried, refused)
    assert not missed, f"{len(missed)} mutations the models refuse pass the walk: {missed[:20]}"


def _members(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every object member in a JSON document, in document order."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key), item
            yield from _members(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _members(item, (*path, index))


def _removed(resource: Json, path: tuple[Any, ...]) -> Json:
    mutated = copy.deepcopy(resource)
    target: Any = mutated
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return mutated


def _shape_mutations(resource: Json, path: tuple[Any, ...], value: Any) -> Iterator[Json]:
    """The member left out, the wrong JSON kind, one value for an array and an array for
    one value, and an element no model has next to it."""
    yield _removed(resource, path)
    yield _replaced(resource, path, {"unknownElement": "x"} if not isinstance(value, dict) else "x")
    if isinstance(value, list):
        yield _replaced(resource, path, value[0])
    else:
        yield _replaced(resource, path, [value])
    parent = _replaced(resource, path, value)
    target: Any = parent
    for step in path[:-1]:
        target = target[step]
    target["unknownElement"] = "x"
    yield parent


def test_malformed_shapes_the_models_refuse_the_walk_refuses(examples):
    """Required elements, choice groups, arrays and unknown members: the walk alone decides
    them now, so it must refuse every shape the models refuse."""
    missed = []
    tried = refused = 0
    for name, resource in _mutation_sample(examples):
        for path, value in list(_members(resource))[::3][:20]:
            for mutated in _shape_mutations(resource, path, value):
                tried += 1
                if not _models_accept(mutated):
                    refused += 1
                    if _walk_accepts(mutated):
                        missed.append((name, path))
    print(f"{tried} shape mutations, {refused} refused by the models")
    assert tried > 5_000 and refused > 2_000, (tried, refused)
    assert not missed, f"{len(missed)} shapes the models refuse pass the walk: {missed[:20]}"
