"""_summary and _elements: return a subset of a resource, tagged SUBSETTED as the spec asks."""

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
_ALWAYS = {"resourceType", "id", "meta"}


@cache
def _element_sets(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a type, by JSON name."""
    model = get_fhir_model_class(resource_type)
    summary, mandatory = set(), set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        json_name = info.alias or name
        if extra.get("summary_element_property"):
            summary.add(json_name)
        if extra.get("element_required"):
            mandatory.add(json_name)
    return frozenset(summary), frozenset(mandatory)


def _tagged(resource: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    subset = {k: v for k, v in resource.items() if k in keep or k.lstrip("_") in keep}
    meta = dict(subset.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    subset["meta"] = meta
    return subset


def subset(
    resource: dict[str, Any], summary: str | None, elements: list[str] | None
) -> dict[str, Any]:
    if summary in (None, "false") and not elements:
        return resource
    summary_set, mandatory = _element_sets(resource["resourceType"])
    if summary == "true":
        return _tagged(resource, set(_ALWAYS | summary_set))
    if summary == "text":
        return _tagged(resource, set(_ALWAYS | mandatory | {"text"}))
    if summary == "data":
        return _tagged(resource, set(resource) - {"text"})
    return _tagged(resource, set(_ALWAYS | mandatory | set(elements or [])))
