"""Every declared search parameter names the SearchParameter that defines it: HL7's R4 one
where R4 has one (checked against the official definitions of hl7.fhir.r4.examples), else the
service's own, published under service/protocol/definitions/."""

import re
from typing import Any

import pytest

from service.fhir.search_params import COMMON_PARAMS, SEARCH_PARAMS, SPEC_BASE, SearchParam
from service.protocol.definitions import load_shipped_definitions
from tests.conftest import IN_CI
from tests.support.r4_examples import r4_search_parameters
from tests.support.r4_validator import node_available

Json = dict[str, Any]


@pytest.fixture(scope="module")
def official() -> dict[str, Json]:
    """R4's SearchParameters by url; CI must have them (Node installs the package)."""
    reason = node_available()
    if reason:
        if IN_CI:
            pytest.fail(f"CI must check the search parameters against R4: {reason}")
        pytest.skip(reason)
    return {sp["url"]: sp for sp in r4_search_parameters()}


def declared() -> list[tuple[str, SearchParam]]:
    """(type, parameter) of every parameter the CapabilityStatement declares."""
    return [
        (resource_type, param)
        for resource_type in sorted(SEARCH_PARAMS)
        for param in [*COMMON_PARAMS, *SEARCH_PARAMS[resource_type]]
    ]


def r4_paths(expression: str, resource_type: str) -> set[str]:
    """The element paths an R4 expression reads on `resource_type` ("value" for
    "(Observation.value as Quantity)", "for" for "Task.for.where(resolve() is Patient)")."""
    paths = set()
    for part in expression.split("|"):
        part = part.strip()
        if part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        for prefix in (f"{resource_type}.", "Resource."):
            if part.startswith(prefix):
                path = part[len(prefix) :]
                path = re.sub(r"\.where\(.*$", "", path)  # a filter, not a step
                path = re.sub(r"(\s+as\s+\w+|\.as\(\w+\))$", "", path)  # a type, not a step
                paths.add(path)
    return paths


def covers(r4_path: str, ours: str) -> bool:
    """Our dotted JSON path reads what the R4 path names (a choice: effective[x] is read as
    effectiveDateTime, effectivePeriod, ...)."""
    if ours == r4_path:
        return True
    rest = ours[len(r4_path) :] if ours.startswith(r4_path) else ""
    return bool(rest) and rest[0].isupper() and "." not in rest


def _where_r4_defines(official: dict[str, Json], resource_type: str, code: str) -> list[str]:
    return sorted(
        url
        for url, sp in official.items()
        if sp["code"] == code and ({resource_type, "Resource"} & set(sp.get("base", [])))
    )


def test_hl7_definitions_exist_in_r4_and_fit(official: dict[str, Json]) -> None:
    problems = []
    for resource_type, param in declared():
        if not (param.definition or "").startswith(f"{SPEC_BASE}/"):
            continue
        where = f"{resource_type}?{param.name} ({param.definition})"
        sp = official.get(param.definition or "")
        if sp is None:
            problems.append(f"{where}: no such R4 SearchParameter")
            continue
        bases = set(sp.get("base", []))
        if resource_type not in bases and "Resource" not in bases:
            problems.append(f"{where}: R4 defines it for {sorted(bases)}, not {resource_type}")
        if sp["code"] != param.name:
            problems.append(f"{where}: R4's code is {sp['code']}")
        if sp["type"] != param.type:
            problems.append(f"{where}: R4's type is {sp['type']}, ours {param.type}")
        paths = r4_paths(sp.get("expression", ""), resource_type)
        for path in param.paths:
            if not any(covers(r4, path) for r4 in paths):
                problems.append(f"{where}: we read {path}, R4 reads {sorted(paths)}")
        if param.targets and not set(param.targets) <= set(sp.get("target", [])):
            problems.append(f"{where}: targets {param.targets} beyond R4's {sp.get('target')}")
    assert not problems, "\n".join(problems)


def test_parameters_without_an_hl7_definition_have_none_in_r4(official: dict[str, Json]) -> None:
    """A parameter that names no HL7 definition is not one R4 defines for the type."""
    problems = [
        f"{resource_type}?{param.name}: R4 defines it: {found}"
        for resource_type, param in declared()
        if not (param.definition or "").startswith(f"{SPEC_BASE}/")
        and (found := _where_r4_defines(official, resource_type, param.name))
    ]
    assert not problems, "\n".join(problems)


def test_the_services_own_parameters_are_published() -> None:
    """Every parameter with a definition that is not HL7's is shipped as that SearchParameter;
    the rest (no definition at all) are the ones R4 has none for and we publish none for."""
    shipped = {
        r["url"]: r for r in load_shipped_definitions() if r["resourceType"] == "SearchParameter"
    }
    own = [
        (resource_type, param)
        for resource_type, param in declared()
        if param.definition and not param.definition.startswith(f"{SPEC_BASE}/")
    ]
    assert own, "the service declares no parameter of its own"
    for resource_type, param in own:
        sp = shipped.get(param.definition or "")
        assert sp is not None, f"{resource_type}?{param.name}: {param.definition} is not shipped"
        assert (sp["code"], sp["type"]) == (param.name, param.type)
        assert resource_type in sp["base"]
        assert sp["description"]
    assert set(shipped) == {param.definition for _, param in own}
