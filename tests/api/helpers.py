"""Small builders and store probes for the HTTP tests."""

from typing import Any

import sqlalchemy as sa

from service.store.tables import resource, resource_history

FHIR = {"content-type": "application/fhir+json"}


def patient(family: str = "Smith", mrn: str = "1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": mrn}],
        "name": [{"family": family, "given": ["Ann"]}],
        "birthDate": "1970-01-01",
        **extra,
    }


def pain_observation(subject: str, value: float, when: str = "2026-01-05T10:00:00Z") -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
    }


def store_snapshot(app: Any) -> tuple[int, int]:
    """(current rows, history rows) of everything but the audit trail: equal before and after
    a rejected request (which adds its AuditEvent: tests/api/test_audit.py)."""
    with app.state.store.engine.connect() as connection:
        current = connection.execute(
            sa.select(sa.func.count())
            .select_from(resource)
            .where(resource.c.res_type != "AuditEvent")
        ).scalar()
        history = connection.execute(
            sa.select(sa.func.count())
            .select_from(resource_history)
            .where(resource_history.c.res_type != "AuditEvent")
        ).scalar()
    return int(current or 0), int(history or 0)


def audit_events(app: Any) -> list[dict[str, Any]]:
    """Every stored AuditEvent, oldest first."""
    with app.state.store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(resource.c.body)
            .where(resource.c.res_type == "AuditEvent")
            .order_by(resource.c.seq)
        ).all()
    return [row.body for row in rows]


def entry_ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """Ids of a searchset's entries with the given search mode, in bundle order."""
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode", "match") == mode
    ]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for item in bundle.get("link", []):
        if item["relation"] == relation:
            return item["url"]
    return None


def outcome_codes(response: Any) -> list[str]:
    """The issue codes of an OperationOutcome response (asserting it is one)."""
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [issue["code"] for issue in body["issue"]]


def if_match(resource: dict[str, Any]) -> dict[str, str]:
    """The If-Match header naming the version ``resource`` was read at."""
    return {"If-Match": f'W/"{resource["meta"]["versionId"]}"'}
