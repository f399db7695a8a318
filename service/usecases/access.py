"""What the caller may see and change, applied inside the use cases.

``Caller`` is the verified token's AccessContext, or None when the service runs open. The
API has already refused a request whose scopes lack its interaction's or operation's needs
(403); here each resource is held against the permits: a resource the caller may not read
reads as 404 (it is not theirs to know about), a write outside what its scopes allow is 403,
a search gets the permits as SQL clauses (so paging and totals count only what the caller
sees), and ``_include``d resources and history entries the caller may not read are left out.
"""

from collections.abc import Callable, Iterable
from typing import Any

from service.auth.compartment import compartment_params
from service.auth.permissions import (
    UNLIMITED,
    InsufficientScope,
    Interaction,
    Need,
    Permit,
    admitted,
    admitted_write,
    interaction_need,
)
from service.auth.verify import AccessContext
from service.fhir.search import Clause, SearchQuery, split_values
from service.fhir.search_params import SEARCH_PARAMS, params_for
from service.store.errors import NotFound

Caller = AccessContext | None
Json = dict[str, Any]


def require(caller: Caller, needs: Iterable[Need]) -> None:
    """403 unless the caller's scopes allow every need."""
    if caller is None:
        return
    unmet = caller.unmet(needs)
    if unmet:
        raise InsufficientScope(unmet)


def permits(caller: Caller, need: Need) -> tuple[Permit, ...] | None:
    """The caller's permits for ``need``: None when nothing limits them; 403 when there are
    none."""
    if caller is None:
        return None
    found = caller.permits(need)
    if not found:
        raise InsufficientScope((need,))
    if found == (UNLIMITED,):
        return None
    return found


def limited(caller: Caller, need: Need) -> tuple[Permit, ...] | None:
    """Like ``permits``, but no permit at all is an empty tuple instead of a 403."""
    if caller is None:
        return None
    found = caller.permits(need)
    return None if found == (UNLIMITED,) else found


def admits(found: tuple[Permit, ...] | None, body: Json | None) -> bool:
    return found is None or (body is not None and admitted(found, body))


def check_readable(
    caller: Caller,
    interaction: Interaction,
    resource_type: str,
    resource_id: str,
    body: Json | None,
) -> None:
    """404 for a resource the caller may not read (as if it did not exist)."""
    found = permits(caller, interaction_need(interaction, resource_type))
    if not admits(found, body):
        raise NotFound(f"{resource_type}/{resource_id} is not known")


def check_writable(caller: Caller, need: Need, body: Json | None) -> None:
    """403 for a write the caller's permits for ``need`` do not admit ``body`` to (a patient
    permit: only its patient's own record, see Permit.admits_write)."""
    found = permits(caller, need)
    if found is not None and (body is None or not admitted_write(found, body)):
        raise InsufficientScope(
            (need,),
            f"the resource lies outside what the token's {need} scopes allow "
            "(patient compartment or scope restriction)",
        )


def restrict_search(caller: Caller, query: SearchQuery) -> None:
    """Narrows a search to what the caller may search (403 when nothing)."""
    found = permits(caller, interaction_need(Interaction.SEARCH, query.resource_type))
    if found is not None:
        query.access = search_groups(query.resource_type, found)


def search_groups(resource_type: str, found: tuple[Permit, ...]) -> tuple[tuple[Clause, ...], ...]:
    """The permits as search clauses: a resource must satisfy every clause of some group.

    A patient permit becomes one group per compartment search parameter (the patient's own
    ``_id`` for Patient), each with the restriction's clauses. A restriction on a parameter
    the type cannot be searched by (or not a token) makes its permit find nothing: a search
    never returns what the permit might not admit.
    """
    known = params_for(resource_type)
    groups: list[tuple[Clause, ...]] = []
    for permit in found:
        restriction: list[Clause] = []
        for name, value in permit.restriction.params:
            param = known.get(name)
            if param is None or param.type not in ("token", "uri"):
                break
            restriction.append(Clause(param, None, tuple(split_values(value))))
        else:
            if permit.patient is None:
                groups.append(tuple(restriction))
                continue
            for clause in _compartment_clauses(resource_type, permit.patient):
                groups.append((clause, *restriction))
    return tuple(groups)


def _compartment_clauses(resource_type: str, patient: str) -> list[Clause]:
    known = params_for(resource_type)
    clauses = []
    if resource_type == "Patient":
        clauses.append(Clause(known["_id"], None, (patient,)))
    for name in compartment_params(resource_type):
        param = known.get(name)
        if param is not None and param.type == "reference":
            clauses.append(Clause(param, None, (f"Patient/{patient}",)))
    return clauses


def readable(caller: Caller) -> Callable[[str, Json | None], bool]:
    """Whether the caller may read a resource of a type (``_include``d ones)."""
    cache: dict[str, tuple[Permit, ...] | None] = {}

    def check(resource_type: str, body: Json | None) -> bool:
        if caller is None:
            return True
        if resource_type not in cache:
            cache[resource_type] = limited(
                caller, interaction_need(Interaction.READ, resource_type)
            )
        found = cache[resource_type]
        return found is None or (bool(found) and body is not None and admitted(found, body))

    return check


def history_filter(
    caller: Caller, resource_type: str | None
) -> Callable[[str, Json | None], bool] | None:
    """Which history entries the caller may see (None: all). Type history needs the type's
    search permission (403 without); system history shows the types the caller may search
    (the definitional ones at least)."""
    if caller is None:
        return None
    if resource_type is not None:
        found = permits(caller, interaction_need(Interaction.HISTORY, resource_type))
        if found is None:
            return None
        type_found = found
        return lambda _type, body: body is not None and admitted(type_found, body)
    per_type = {
        name: limited(caller, interaction_need(Interaction.HISTORY, name)) for name in SEARCH_PARAMS
    }
    if all(found is None for found in per_type.values()):
        return None

    def check(entry_type: str, body: Json | None) -> bool:
        found = per_type.get(entry_type, ())
        return found is None or (bool(found) and body is not None and admitted(found, body))

    return check
