"""Discovery: one CDS service per hook, in the CDS Hooks 2.0 shape, whose prefetch templates
are FHIR queries a FHIR server (this one, playing the EHR) answers with what the hooks read."""

from typing import Any

from tests.api.cds.helpers import eligible, known_patient
from tests.support.cds_shapes import check


def test_discovery_lists_one_service_per_hook(client) -> None:
    answer = client.get("/cds-services")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    document = answer.json()
    assert check("CDSHooksServices", document) == []
    services = {s["hook"]: s for s in document["services"]}
    assert set(services) == {"patient-view", "order-sign", "appointment-book"}
    for service in services.values():
        assert {"hook", "id", "title", "description", "prefetch", "usageRequirements"} <= set(
            service
        )
    assert set(services["patient-view"]["prefetch"]) == {"patient", "painScores", "screening"}
    assert set(services["appointment-book"]["prefetch"]) == {"patient"}


def _filled(template: str, patient_id: str) -> str:
    return "/fhir/" + template.replace("{{context.patientId}}", patient_id)


def test_the_prefetch_templates_are_queries_a_fhir_server_answers(client) -> None:
    known_patient(client, "disc-1", "d-1", eligible())
    templates: dict[str, Any] = client.get("/cds-services").json()["services"][0]["prefetch"]
    patient = client.get(_filled(templates["patient"], "disc-1")).json()
    assert patient["resourceType"] == "Patient" and patient["id"] == "disc-1"
    pain = client.get(_filled(templates["painScores"], "disc-1")).json()
    screening = client.get(_filled(templates["screening"], "disc-1")).json()
    assert pain["type"] == "searchset" and screening["type"] == "searchset"
    pain_codes = {e["resource"]["code"]["coding"][0]["code"] for e in pain["entry"]}
    screening_codes = {e["resource"]["code"]["coding"][0]["code"] for e in screening["entry"]}
    assert pain_codes == {"72514-3"} and len(pain["entry"]) == 14
    assert screening_codes == {"episode-phase", "red-flag-screen"}
