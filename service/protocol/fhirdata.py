"""Small readers for plain FHIR R4 JSON dicts (codings, components, times, references).

Kept apart from the rules so the clinical modules read like the decision table.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from typing import Any, cast

from service.protocol.codes import CAREPLAN_CS, LOINC, LOINC_PAIN_NRS

# Observations in these states are not evidence of anything.
VOID_STATUSES = frozenset({"entered-in-error", "cancelled"})

Json = dict[str, Any]


def is_void(resource: Json) -> bool:
    return resource.get("status") in VOID_STATUSES


def has_code(concept: Json | None, system: str, code: str) -> bool:
    return any(
        c.get("system") == system and c.get("code") == code
        for c in (concept or {}).get("coding", [])
    )


def code_in(concept: Json | None, system: str) -> str | None:
    """The first code of `concept` in `system`."""
    for coding in (concept or {}).get("coding", []):
        if coding.get("system") == system and coding.get("code"):
            return str(coding["code"])
    return None


def is_service_code(resource: Json, code: str) -> bool:
    return has_code(resource.get("code"), CAREPLAN_CS, code)


def is_pain_score(resource: Json) -> bool:
    return has_code(resource.get("code"), LOINC, LOINC_PAIN_NRS)


def component(resource: Json, code: str) -> Json | None:
    for comp in resource.get("component", []):
        if has_code(comp.get("code"), CAREPLAN_CS, code):
            return cast(Json, comp)
    return None


def component_value(resource: Json, code: str, key: str) -> Any:
    """A component's value[x] (`key`), or None when the component is not reported."""
    comp = component(resource, code)
    return None if comp is None else comp.get(key)


def score(resource: Json) -> int | None:
    """A 0-10 pain score from valueInteger or valueQuantity (EHRs and apps send both), or None
    when the Observation carries no value."""
    value = resource.get("valueInteger")
    if value is None:
        quantity = resource.get("valueQuantity")
        value = quantity.get("value") if isinstance(quantity, dict) else None
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return round(value)


def parse_datetime(text: str | None, tz: tzinfo | None = UTC) -> datetime | None:
    """Parse a FHIR date/dateTime/instant; a date or a naive time is read in `tz`."""
    if not text:
        return None
    if len(text) == 4:  # FHIR allows YYYY and YYYY-MM; read them as the first day
        text = f"{text}-01-01"
    elif len(text) == 7:
        text = f"{text}-01"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def effective_start(resource: Json, tz: tzinfo | None = UTC) -> datetime | None:
    period = resource.get("effectivePeriod") or {}
    return parse_datetime(
        period.get("start")
        or resource.get("effectiveDateTime")
        or resource.get("effectiveInstant"),
        tz,
    )


def effective_end(resource: Json, tz: tzinfo | None = UTC) -> datetime | None:
    period = resource.get("effectivePeriod") or {}
    return parse_datetime(
        period.get("end")
        or period.get("start")
        or resource.get("effectiveDateTime")
        or resource.get("effectiveInstant")
        or resource.get("issued"),
        tz,
    )


def local_date(moment: datetime, tz: tzinfo | None) -> date:
    """The calendar day of `moment` as seen from the decision clock's offset."""
    return moment.astimezone(tz).date() if tz else moment.date()


def ref_key(resource: Json) -> str | None:
    """'Type/id' for a resource that has an id."""
    if resource.get("id"):
        return f"{resource['resourceType']}/{resource['id']}"
    return None


def identifier_key(resource: Json) -> str | None:
    """'system|value' of the first identifier, used to recognise the same session again."""
    for ident in resource.get("identifier", []):
        if ident.get("value"):
            return f"{ident.get('system', '')}|{ident['value']}"
    return None
