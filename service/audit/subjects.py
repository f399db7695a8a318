"""What an AuditEvent names: the resources an interaction touched and the patients they concern."""

from collections.abc import Iterable
from typing import Any

from service.fhir.indexing import parse_reference, walk
from service.fhir.search_params import params_for

# Search parameters whose Patient references name the patients a search is about.
_PATIENT_PARAMS = ("patient", "subject", "for", "_id")


def version_reference(resource_type: str, resource_id: str, version: int | str | None) -> str:
    """``Type/id/_history/version`` (BALP: the version read or written), ``Type/id`` without."""
    base = f"{resource_type}/{resource_id}"
    return f"{base}/_history/{version}" if version is not None else base


def reference_of(body: dict[str, Any]) -> str | None:
    """The versioned reference of a stored resource's body (its id and meta.versionId)."""
    resource_type, resource_id = body.get("resourceType"), body.get("id")
    if not isinstance(resource_type, str) or not isinstance(resource_id, str):
        return None
    version = (body.get("meta") or {}).get("versionId")
    return version_reference(resource_type, resource_id, version)


def patients_of(body: dict[str, Any]) -> list[str]:
    """The local patients a resource concerns: a Patient itself, else the Patient references
    of its type's ``patient`` search parameter (another server's Patient/x is not ours)."""
    resource_type = body.get("resourceType")
    if resource_type == "Patient":
        return [f"Patient/{body['id']}"] if isinstance(body.get("id"), str) else []
    param = params_for(str(resource_type)).get("patient")
    if param is None:
        return []
    found = []
    for path in param.paths:
        for value in walk(body, path):
            reference = value.get("reference") if isinstance(value, dict) else None
            if not isinstance(reference, str) or "://" in reference:
                continue
            target_type, target_id = parse_reference(reference.partition("|")[0])
            if target_type == "Patient" and target_id is not None:
                found.append(f"Patient/{target_id}")
    return found


def patients_in(bodies: Iterable[dict[str, Any] | None]) -> list[str]:
    """The patients of several resources, once each, in order."""
    found: dict[str, None] = {}
    for body in bodies:
        if body is not None:
            found.update(dict.fromkeys(patients_of(body)))
    return list(found)


def queried_patients(resource_type: str, parameters: Iterable[tuple[str, str]]) -> list[str]:
    """The patients a search names in its criteria (``patient=``, ``subject=Patient/x``, a
    Patient search by ``_id``), found or not."""
    found: dict[str, None] = {}
    for key, value in parameters:
        name = key.partition(":")[0]
        if name not in _PATIENT_PARAMS:
            continue
        for item in value.split(","):
            item = item.strip()
            bare_patient_id = "/" not in item and (
                name == "patient" or (name == "_id" and resource_type == "Patient")
            )
            if bare_patient_id:
                item = f"Patient/{item}"
            target_type, target_id = parse_reference(item)
            if target_type == "Patient" and target_id is not None and "://" not in item:
                found[f"Patient/{target_id}"] = None
    return list(found)
