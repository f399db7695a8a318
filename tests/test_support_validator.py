"""Prove the independent R4 validator and the official-examples loader actually work.

If these pass, a green "validates against R4" test elsewhere means something: the
validator rejects known-bad resources and accepts the HL7 examples.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import r4_validator
from tests.support.node import NodeSetupError, ensure_node_modules
from tests.support.r4_examples import load_examples, load_examples_named
from tests.support.r4_validator import (
    R4Validator,
    ValidatorError,
    require_node,
    validator_or_skip,
)

pytestmark = pytest.mark.node

CHECKED_TYPES = ["CarePlan", "PlanDefinition", "Observation", "Patient", "Task"]

# Official R4 examples that really are invalid, with the reason; pinned package versions
# make this exact. Observation-clinical-gender has performer -> Encounter, which
# Observation.performer does not allow.
KNOWN_INVALID_EXAMPLES: dict[str, set[str]] = {
    "CarePlan": set(),
    "PlanDefinition": set(),
    "Observation": {"Observation-clinical-gender.json"},
    "Patient": set(),
    "Task": set(),
}


@pytest.fixture(scope="module")
def node() -> None:
    """Node.js and npm are here (skip locally / fail in CI otherwise)."""
    require_node(pytest)


@pytest.fixture(scope="module")
def validator() -> Iterator[R4Validator]:
    v = validator_or_skip(pytest)
    yield v
    v.close()


def _observation(**extra: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {
            "value": 72,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    obs.update(extra)
    return obs


# -- the validator catches errors ------------------------------------------------------


def test_valid_observation_has_no_issues(validator: R4Validator) -> None:
    assert validator.validate(_observation()) == []


def test_absolute_and_urn_references_are_accepted(validator: R4Validator) -> None:
    # medplum 4.5 warns on these although R4 allows them; validate.mjs filters that out.
    for ref in [
        "http://example.org/fhir/Patient/p1",
        "urn:uuid:0e0a780e-4486-4cd0-bfae-7243c579f208",
    ]:
        assert validator.validate(_observation(subject={"reference": ref})) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"status": "finished"}, "observation-status"),
        ({"code": None}, "Missing required property (Observation.code)"),
        ({"valueQuantity": "x"}, "Observation.value[x]"),
        ({"bogusField": 1}, 'Invalid additional property "bogusField"'),
        ({"subject": {"reference": "Medication/m1"}}, 'Invalid reference: got "Medication"'),
        ({"effectiveDateTime": "2024-13-45"}, "Invalid dateTime format"),
        ({"subject": {"reference": "Patient/p1"}, "id": "has space"}, "Invalid id format"),
    ],
    ids=["bad-code", "missing-required", "wrong-type", "unknown-field", "ref-type", "date", "id"],
)
def test_invalid_observation_is_rejected(
    validator: R4Validator, change: dict[str, Any], expected: str
) -> None:
    obs = _observation()
    for key, value in change.items():
        if value is None:
            del obs[key]
        else:
            obs[key] = value
    issues = validator.validate(obs)
    assert issues, f"validator accepted {change}"
    assert any(expected in issue for issue in issues), issues


def test_required_binding_in_nested_elements(validator: R4Validator) -> None:
    careplan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "activity": [
            {
                "detail": {
                    "status": "bogus",
                    "scheduledTiming": {
                        "repeat": {"frequency": 1, "period": 1, "periodUnit": "fortnight"}
                    },
                }
            }
        ],
    }
    issues = validator.validate(careplan)
    assert any("CarePlan.activity[0].detail.status" in i for i in issues), issues
    assert any("periodUnit" in i for i in issues), issues
    careplan["activity"][0]["detail"]["status"] = "scheduled"
    careplan["activity"][0]["detail"]["scheduledTiming"]["repeat"]["periodUnit"] = "d"
    assert validator.validate(careplan) == []


def test_bundle_entries_are_validated_once(validator: R4Validator) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": _observation()}, {"resource": _observation(status="finished")}],
    }
    issues = validator.validate(bundle)
    assert len(issues) == 1, issues
    assert "Bundle.entry[1].resource.status" in issues[0]


def test_parameters_part_resources_are_validated(validator: R4Validator) -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "ok", "resource": _observation()},
            {"name": "outer", "part": [{"name": "bad", "resource": _observation(status="x")}]},
        ],
    }
    issues = validator.validate(params)
    assert issues, "bad part.resource was not reported"
    assert any("Parameters.parameter[1].part[0].resource.status" in i for i in issues), issues


def test_assert_valid(validator: R4Validator) -> None:
    validator.assert_valid(_observation())
    with pytest.raises(AssertionError, match="Observation/obs-1 is not valid R4"):
        validator.assert_valid(_observation(status="finished"))


def test_thread_safe(validator: R4Validator) -> None:
    good, bad = _observation(), _observation(status="finished")
    results: list[tuple[bool, list[str]]] = []

    def work(i: int) -> None:
        res = good if i % 2 else bad
        for _ in range(10):
            results.append((res is good, validator.validate(res)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40
    assert all((issues == []) == is_good for is_good, issues in results)


def test_validate_before_start_is_an_error() -> None:
    with pytest.raises(ValidatorError, match="not started"):
        R4Validator().validate(_observation())


# -- skip / fail policy ----------------------------------------------------------------


def test_policy_skips_locally_when_node_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(r4_validator, "node_available", lambda: "node is not on PATH")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="node is not on PATH"):
        validator_or_skip(pytest)


def test_policy_fails_in_ci_when_node_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(r4_validator, "node_available", lambda: "node is not on PATH")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        validator_or_skip(pytest)


def test_policy_fails_in_ci_when_validator_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_start(self: R4Validator) -> R4Validator:
        raise NodeSetupError("npm ci failed (exit 1)")

    monkeypatch.setattr(r4_validator, "node_available", lambda: None)
    monkeypatch.setattr(R4Validator, "start", broken_start)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="could not start: npm ci failed"):
        validator_or_skip(pytest)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="could not start: npm ci failed"):
        validator_or_skip(pytest)


# -- npm install helper ----------------------------------------------------------------


def test_ensure_node_modules_reports_npm_failure(node: None, tmp_path: Path) -> None:
    # A lockfile out of sync with package.json makes `npm ci` fail without network.
    (tmp_path / "package.json").write_text(
        json.dumps({"name": "x", "version": "1.0.0", "dependencies": {"left-pad": "1.3.0"}})
    )
    (tmp_path / "package-lock.json").write_text(
        json.dumps({"name": "x", "version": "1.0.0", "lockfileVersion": 3, "packages": {}})
    )
    with pytest.raises(NodeSetupError, match=r"npm ci .* failed"):
        ensure_node_modules(tmp_path)


def test_ensure_node_modules_needs_a_lockfile(tmp_path: Path) -> None:
    with pytest.raises(NodeSetupError, match=r"package-lock\.json is missing"):
        ensure_node_modules(tmp_path)


# -- official examples -----------------------------------------------------------------


@pytest.mark.parametrize("resource_type", CHECKED_TYPES)
def test_examples_load(node: None, resource_type: str) -> None:
    named = load_examples_named(resource_type)
    assert len(named) > 0
    names = [name for name, _ in named]
    assert names == sorted(names)
    assert all(r["resourceType"] == resource_type for _, r in named)
    # Deterministic and independent copies.
    first, second = load_examples(resource_type), load_examples(resource_type)
    assert first == second
    first[0]["mutated"] = True
    assert "mutated" not in load_examples(resource_type)[0]


def test_examples_exclude_similarly_named_types(node: None) -> None:
    # "Observation-*" must not pick up ObservationDefinition examples.
    assert {r["resourceType"] for r in load_examples("Observation")} == {"Observation"}
    assert load_examples("NoSuchType") == []


@pytest.mark.parametrize("resource_type", CHECKED_TYPES)
def test_validator_accepts_official_examples(validator: R4Validator, resource_type: str) -> None:
    rejected = {
        name: issues
        for name, resource in load_examples_named(resource_type)
        if (issues := validator.validate(resource))
    }
    assert set(rejected) == KNOWN_INVALID_EXAMPLES[resource_type], json.dumps(rejected, indent=1)


def test_known_invalid_example_is_rejected_for_the_known_reason(validator: R4Validator) -> None:
    named = dict(load_examples_named("Observation"))
    issues = validator.validate(named["Observation-clinical-gender.json"])
    assert len(issues) == 1
    assert 'Invalid reference: got "Encounter"' in issues[0]
    assert "(Observation.performer[0])" in issues[0]
