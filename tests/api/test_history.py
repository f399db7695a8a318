"""History: instance, type and system; newest first; deletes; _since; _count paging."""

import time
from datetime import UTC, datetime

from tests.api.helpers import link, outcome_codes, patient


def _history(client, path: str, params=None) -> dict:
    response = client.get(f"/fhir/{path}", params=params)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    return bundle


def _versions(bundle: dict) -> list[tuple[str, str, str]]:
    """(type/id, method, etag) of each entry, in bundle order."""
    out = []
    for entry in bundle.get("entry", []):
        ref = entry["fullUrl"].split("/fhir/")[1]
        out.append((ref, entry["request"]["method"], entry["response"]["etag"]))
    return out


def _life(client) -> str:
    """Create, update, delete and re-create one patient: versions 1..4."""
    pid = client.post("/fhir/Patient", json=patient("First")).json()["id"]
    assert client.put(f"/fhir/Patient/{pid}", json={**patient("Second"), "id": pid}).is_success
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    assert client.put(f"/fhir/Patient/{pid}", json={**patient("Third"), "id": pid}).is_success
    return pid


def test_instance_history(client):
    pid = _life(client)
    bundle = _history(client, f"Patient/{pid}/_history")
    assert bundle["total"] == 4
    ref = f"Patient/{pid}"
    assert _versions(bundle) == [
        (ref, "PUT", 'W/"4"'),
        (ref, "DELETE", 'W/"3"'),
        (ref, "PUT", 'W/"2"'),
        (ref, "POST", 'W/"1"'),
    ]
    entries = bundle["entry"]
    assert entries[0]["resource"]["name"][0]["family"] == "Third"
    assert entries[0]["resource"]["meta"]["versionId"] == "4"
    assert "resource" not in entries[1]  # a deletion carries no resource
    assert entries[1]["request"]["url"] == ref
    assert entries[1]["response"]["status"].startswith("204")
    assert entries[2]["request"]["url"] == ref
    assert entries[2]["response"]["status"].startswith("200")
    assert entries[3]["request"]["url"] == "Patient"
    assert entries[3]["response"]["status"].startswith("201")
    assert entries[3]["resource"]["name"][0]["family"] == "First"
    for entry in entries:
        assert entry["response"]["lastModified"]
    stamps = [e["response"]["lastModified"] for e in entries]
    assert stamps == sorted(stamps, reverse=True)


def test_instance_history_of_deleted_and_unknown(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.delete(f"/fhir/Patient/{pid}")
    bundle = _history(client, f"Patient/{pid}/_history")
    assert [m for _, m, _ in _versions(bundle)] == ["DELETE", "POST"]
    unknown = client.get("/fhir/Patient/nobody/_history")
    assert unknown.status_code == 404
    assert outcome_codes(unknown) == ["not-found"]


def test_created_by_put_is_201(client):
    client.put("/fhir/Patient/chosen-id", json={**patient(), "id": "chosen-id"})
    entry = _history(client, "Patient/chosen-id/_history")["entry"][0]
    assert entry["request"] == {"method": "PUT", "url": "Patient/chosen-id"}
    assert entry["response"]["status"].startswith("201")


def test_type_history(client):
    first = _life(client)
    other = client.post("/fhir/Patient", json=patient("Other")).json()["id"]
    client.post(
        "/fhir/CarePlan",
        json={
            "resourceType": "CarePlan",
            "status": "draft",
            "intent": "proposal",
            "subject": {"reference": f"Patient/{other}"},
        },
    )
    bundle = _history(client, "Patient/_history")
    assert bundle["total"] == 5
    refs = [r for r, _, _ in _versions(bundle)]
    assert refs == [f"Patient/{other}"] + [f"Patient/{first}"] * 4
    assert all(r.startswith("Patient/") for r in refs)


def test_system_history(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.put(f"/fhir/Patient/{pid}", json={**patient("Later"), "id": pid})
    condition_id = "condition-1"
    client.put(
        f"/fhir/Condition/{condition_id}",
        json={
            "resourceType": "Condition",
            "id": condition_id,
            "subject": {"reference": f"Patient/{pid}"},
        },
    )
    bundle = _history(client, "_history", {"_count": "6"})
    versions = _versions(bundle)
    # Each write stored its AuditEvent in its transaction, after its own rows: newest first,
    # each event comes just before the version it records.
    assert [v for v in versions if not v[0].startswith("AuditEvent/")] == [
        (f"Condition/{condition_id}", "PUT", 'W/"1"'),
        (f"Patient/{pid}", "PUT", 'W/"2"'),
        (f"Patient/{pid}", "POST", 'W/"1"'),
    ]
    assert [v[0].split("/")[0] for v in versions] == ["AuditEvent", "Condition"] + [
        "AuditEvent",
        "Patient",
    ] * 2
    assert all(v[1:] == ("POST", 'W/"1"') for v in versions if v[0].startswith("AuditEvent/"))
    # System history also holds what start-up loaded (the protocol definitions).
    assert bundle["total"] >= 6


def test_since(client):
    before = client.post("/fhir/Patient", json=patient("Before")).json()["id"]
    time.sleep(0.02)
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(0.02)
    after = client.post("/fhir/Patient", json=patient("After")).json()["id"]
    client.put(f"/fhir/Patient/{before}", json={**patient("Changed"), "id": before})
    bundle = _history(client, "Patient/_history", {"_since": since})
    assert _versions(bundle) == [
        (f"Patient/{before}", "PUT", 'W/"2"'),
        (f"Patient/{after}", "POST", 'W/"1"'),
    ]
    assert bundle["total"] == 2
    assert "_since=" in link(bundle, "self")
    system = _history(client, "_history", {"_since": since})
    audited = [e for e in system["entry"] if e["resource"]["resourceType"] == "AuditEvent"]
    assert len(system["entry"]) - len(audited) == 2
    # The AuditEvents of the create, the update and the type history read.
    assert len(audited) == 3
    instance = _history(client, f"Patient/{before}/_history", {"_since": since})
    assert len(instance["entry"]) == 1
    future = _history(client, "_history", {"_since": "2999-01-01"})
    assert "entry" not in future and future["total"] == 0
    bad = client.get("/fhir/_history", params={"_since": "yesterday"})
    assert bad.status_code == 400
    assert outcome_codes(bad) == ["invalid"]


def test_count_and_next_paging(client):
    pid = _life(client)
    for i in range(3):
        client.post("/fhir/Patient", json=patient(f"P{i}"))
    everything = _versions(_history(client, "Patient/_history"))
    assert len(everything) == 7
    url = "/fhir/Patient/_history?_count=3"
    pages = []
    while url:
        bundle = client.get(url).json()
        pages.append(_versions(bundle))
        url = link(bundle, "next")
        if len(pages) == 1:
            # A write between page requests lands on top, not on a later page.
            client.put(f"/fhir/Patient/{pid}", json={**patient("Fifth"), "id": pid})
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [v for p in pages for v in p] == everything
    instance_pages = []
    url = f"/fhir/Patient/{pid}/_history?_count=2"
    while url:
        bundle = client.get(url).json()
        instance_pages.append([e["response"]["etag"] for e in bundle["entry"]])
        url = link(bundle, "next")
    assert instance_pages == [['W/"5"', 'W/"4"'], ['W/"3"', 'W/"2"'], ['W/"1"']]
    for bad in ("-1", "x"):
        response = client.get("/fhir/_history", params={"_count": bad})
        assert response.status_code == 400
    assert client.get("/fhir/_history", params={"_cursor": "x"}).status_code == 400
