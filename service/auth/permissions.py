"""What each FHIR interaction and operation needs, and in which ways a token's scopes allow it.

Every interaction needs one permission letter on its resource type (read and vread: r; search
and history: s; create: c; update and patch: u; delete: d); an operation declares its needs.
The answer to "may this token do X on T" is a tuple of ``Permit``s: empty means no (403), and
otherwise a resource is allowed when any permit admits it (its patient compartment, its
restriction). Definitional resources are readable and searchable by any valid token.

Contexts: a ``patient/`` scope counts only with the token's ``patient`` claim and limits access
to that patient's compartment; without the claim it grants nothing. ``user/`` scopes count as
``system/`` ones: this service keeps no per-user permissions, so what a user may see is for the
authorization server that granted the scope to decide.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.auth.compartment import in_compartment, owners_of
from service.auth.scopes import NO_RESTRICTION, Restriction, ScopeSet


class Interaction(StrEnum):
    READ = "read"
    VREAD = "vread"
    SEARCH = "search"
    HISTORY = "history"
    CREATE = "create"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"


INTERACTION_LETTER: Mapping[Interaction, str] = {
    Interaction.READ: "r",
    Interaction.VREAD: "r",
    Interaction.SEARCH: "s",
    Interaction.HISTORY: "s",
    Interaction.CREATE: "c",
    Interaction.UPDATE: "u",
    Interaction.PATCH: "u",
    Interaction.DELETE: "d",
}

DEFINITIONAL_TYPES = frozenset(
    {
        "PlanDefinition",
        "ActivityDefinition",
        "CodeSystem",
        "Questionnaire",
        "OperationDefinition",
        "SearchParameter",
    }
)


@dataclass(frozen=True)
class Need:
    """One permission letter on one resource type."""

    resource_type: str
    letter: str

    def __str__(self) -> str:
        return f"{self.resource_type}.{self.letter}"


OPERATION_NEEDS: Mapping[str, tuple[Need, ...]] = {
    "$submit-session": (Need("CarePlan", "u"), Need("Observation", "c")),
    "$evaluate": (Need("CarePlan", "u"),),
    "$apply": (Need("PlanDefinition", "r"), Need("Patient", "r")),
}


class InsufficientScope(Exception):
    """The token does not allow what was asked (403, ``insufficient_scope``): its scopes lack
    ``needs``, or the resource lies outside the patient compartment or restriction its scopes
    are limited to. The message names scopes and types, never a resource's content."""

    def __init__(self, needs: Iterable[Need], reason: str | None = None) -> None:
        self.needs = tuple(needs)
        wanted = ", ".join(str(need) for need in self.needs)
        self.reason = reason or f"the token's scopes do not allow {wanted}"
        super().__init__(self.reason)


class UnknownOperation(KeyError):
    """An operation without declared needs: it is refused rather than let through."""


def interaction_need(interaction: Interaction, resource_type: str) -> Need:
    return Need(resource_type, INTERACTION_LETTER[interaction])


def operation_needs(operation: str) -> tuple[Need, ...]:
    """The needs of ``$name``; raises UnknownOperation for one that declares none."""
    try:
        return OPERATION_NEEDS[operation]
    except KeyError:
        raise UnknownOperation(operation) from None


@dataclass(frozen=True)
class Permit:
    """One way a token may do what it asked: within ``patient``'s compartment when set, and
    within ``restriction`` when it has pairs. For a search, both become filters; for a read,
    ``admits`` decides; for a write, the resource written must be admitted (for an update,
    the stored version too, or a token could take a resource out of another's reach)."""

    patient: str | None = None
    restriction: Restriction = NO_RESTRICTION

    @property
    def unlimited(self) -> bool:
        return self.patient is None and not self.restriction

    def admits(self, resource: Mapping[str, Any]) -> bool:
        if self.patient is not None and not in_compartment(resource, self.patient):
            return False
        return self.restriction.matches(resource)

    def admits_write(self, resource: Mapping[str, Any]) -> bool:
        """A write within a patient's compartment must be that patient's record alone."""
        if self.patient is not None and owners_of(resource) != {self.patient}:
            return False
        return self.restriction.matches(resource)


UNLIMITED = Permit()


def permits(scopes: ScopeSet, patient: str | None, need: Need) -> tuple[Permit, ...]:
    """The ways ``scopes`` (with the token's ``patient`` claim) allow ``need``; empty: none.
    An unlimited permit, when there is one, is the only one returned."""
    if need.letter in ("r", "s") and need.resource_type in DEFINITIONAL_TYPES:
        return (UNLIMITED,)
    found: list[Permit] = []
    for scope in scopes.matching(need.letter, need.resource_type):
        if scope.context == "patient":
            # The trail names other patients, clients and addresses: system or user only.
            if patient is None or need.resource_type == "AuditEvent":
                continue
            permit = Permit(patient, scope.restriction)
        else:
            permit = Permit(None, scope.restriction)
        if permit.unlimited:
            return (UNLIMITED,)
        if permit not in found:
            found.append(permit)
    return tuple(found)


def unmet_needs(scopes: ScopeSet, patient: str | None, needs: Iterable[Need]) -> tuple[Need, ...]:
    """The needs no scope allows (for a 403 that names them)."""
    return tuple(need for need in needs if not permits(scopes, patient, need))


def admitted(found: Iterable[Permit], resource: Mapping[str, Any]) -> bool:
    """Whether any of the permits admits the resource."""
    return any(permit.admits(resource) for permit in found)


def admitted_write(found: Iterable[Permit], resource: Mapping[str, Any]) -> bool:
    """Whether any of the permits admits writing the resource."""
    return any(permit.admits_write(resource) for permit in found)
