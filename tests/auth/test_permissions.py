"""What interactions and operations need, and how scopes, the patient claim and restrictions
combine into permits."""

import pytest

from service.auth.permissions import (
    DEFINITIONAL_TYPES,
    UNLIMITED,
    Interaction,
    Need,
    UnknownOperation,
    admitted,
    interaction_need,
    operation_needs,
    permits,
    unmet_needs,
)
from service.auth.scopes import ScopeSet

PAIN = {"system": "http://loinc.org", "code": "72514-3"}


def observation(patient: str, code: dict[str, str] = PAIN) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [code]},
    }


@pytest.mark.parametrize(
    ("interaction", "letter"),
    [
        (Interaction.READ, "r"),
        (Interaction.VREAD, "r"),
        (Interaction.SEARCH, "s"),
        (Interaction.HISTORY, "s"),
        (Interaction.CREATE, "c"),
        (Interaction.UPDATE, "u"),
        (Interaction.PATCH, "u"),
        (Interaction.DELETE, "d"),
    ],
)
def test_each_interaction_needs_its_letter(interaction: Interaction, letter: str) -> None:
    assert interaction_need(interaction, "CarePlan") == Need("CarePlan", letter)


def test_each_interaction_is_refused_without_its_letter() -> None:
    for letter in "cruds":
        others = "".join(x for x in "cruds" if x != letter)
        scopes = ScopeSet.parse(f"system/CarePlan.{others}")
        assert permits(scopes, None, Need("CarePlan", letter)) == (), letter


def test_operations_declare_their_needs() -> None:
    assert operation_needs("$submit-session") == (Need("CarePlan", "u"), Need("Observation", "c"))
    assert operation_needs("$evaluate") == (Need("CarePlan", "u"),)
    assert operation_needs("$apply") == (Need("PlanDefinition", "r"), Need("Patient", "r"))
    with pytest.raises(UnknownOperation):
        operation_needs("$everything")


def test_submit_session_needs_both_scopes() -> None:
    needs = operation_needs("$submit-session")
    only_careplan = ScopeSet.parse("system/CarePlan.u")
    both = ScopeSet.parse("system/CarePlan.u system/Observation.c")
    assert unmet_needs(only_careplan, None, needs) == (Need("Observation", "c"),)
    assert unmet_needs(both, None, needs) == ()


@pytest.mark.parametrize("resource_type", sorted(DEFINITIONAL_TYPES))
def test_definitional_types_are_readable_by_any_token(resource_type: str) -> None:
    no_scopes = ScopeSet()
    assert permits(no_scopes, None, Need(resource_type, "r")) == (UNLIMITED,)
    assert permits(no_scopes, None, Need(resource_type, "s")) == (UNLIMITED,)
    assert permits(no_scopes, None, Need(resource_type, "u")) == ()


def test_system_scope_is_unlimited() -> None:
    found = permits(ScopeSet.parse("system/Observation.rs"), None, Need("Observation", "r"))
    assert found == (UNLIMITED,)
    assert admitted(found, observation("anyone"))


def test_user_scope_counts_like_a_system_scope() -> None:
    assert permits(ScopeSet.parse("user/*.r"), None, Need("CarePlan", "r")) == (UNLIMITED,)


def test_patient_scope_limits_to_the_compartment() -> None:
    found = permits(ScopeSet.parse("patient/Observation.rs"), "p1", Need("Observation", "r"))
    assert [permit.patient for permit in found] == ["p1"]
    assert admitted(found, observation("p1"))
    assert not admitted(found, observation("p2"))


def test_patient_scope_without_patient_claim_grants_nothing() -> None:
    assert permits(ScopeSet.parse("patient/Observation.rs"), None, Need("Observation", "r")) == ()


def test_restricted_scope_admits_matching_resources_only() -> None:
    scopes = ScopeSet.parse("patient/Observation.cruds?code=http://loinc.org|72514-3")
    found = permits(scopes, "p1", Need("Observation", "c"))
    assert admitted(found, observation("p1"))
    assert not admitted(found, observation("p1", {"system": "http://loinc.org", "code": "8867-4"}))
    assert not admitted(found, observation("p2"))


def test_an_unlimited_scope_wins_over_limited_ones() -> None:
    scopes = ScopeSet.parse("patient/Observation.rs system/Observation.r")
    assert permits(scopes, "p1", Need("Observation", "r")) == (UNLIMITED,)
    # search is only allowed through the patient scope
    assert [p.patient for p in permits(scopes, "p1", Need("Observation", "s"))] == ["p1"]


def test_any_of_several_limited_permits_admits() -> None:
    scopes = ScopeSet.parse(
        "system/Observation.r?code=http://loinc.org|72514-3 patient/Observation.r"
    )
    found = permits(scopes, "p1", Need("Observation", "r"))
    assert len(found) == 2
    assert admitted(found, observation("p9"))  # through the code restriction
    assert admitted(found, observation("p1", {"system": "x", "code": "y"}))  # through the patient
    assert not admitted(found, observation("p9", {"system": "x", "code": "y"}))
