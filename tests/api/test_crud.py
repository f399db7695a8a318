"""read, vread, create, conditional create, update with If-Match, delete then 410."""

from email.utils import parsedate_to_datetime

from tests.api.helpers import FHIR, patient, store_snapshot


def test_create_read_vread(client):
    created = client.post("/fhir/Patient", json=patient())
    assert created.status_code == 201
    body = created.json()
    assert body["meta"]["versionId"] == "1"
    assert created.headers["etag"] == 'W/"1"'
    assert created.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert parsedate_to_datetime(created.headers["last-modified"]).year >= 2026
    assert created.headers["content-type"].startswith("application/fhir+json")

    read = client.get(f"/fhir/Patient/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body
    vread = client.get(f"/fhir/Patient/{body['id']}/_history/1")
    assert vread.json() == body
    assert client.get(f"/fhir/Patient/{body['id']}/_history/2").status_code == 404


def test_create_ignores_client_id(client):
    created = client.post("/fhir/Patient", json={**patient(), "id": "chosen"}).json()
    assert created["id"] != "chosen"


def test_update_with_if_match_and_stale_etag(client, app):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    changed = {**patient(family="Jones"), "id": pid}
    ok = client.put(f"/fhir/Patient/{pid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    assert ok.json()["meta"]["versionId"] == "2"
    assert ok.headers["etag"] == 'W/"2"'
    before = store_snapshot(app)
    stale = client.put(f"/fhir/Patient/{pid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    malformed = client.put(f"/fhir/Patient/{pid}", json=changed, headers={"If-Match": "one"})
    assert malformed.status_code == 400
    assert store_snapshot(app) == before
    assert client.get(f"/fhir/Patient/{pid}/_history/1").json()["name"][0]["family"] == "Smith"


def test_update_creates_with_client_id(client):
    response = client.put("/fhir/Patient/p-123", json={**patient(), "id": "p-123"})
    assert response.status_code == 201
    assert response.headers["location"].endswith("/fhir/Patient/p-123/_history/1")


def test_delete_then_gone_and_recreate(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    deleted = client.delete(f"/fhir/Patient/{pid}")
    assert deleted.status_code == 204
    gone = client.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert client.get(f"/fhir/Patient/{pid}/_history/2").status_code == 410
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    assert client.delete("/fhir/Patient/never-was").status_code == 404
    again = client.put(f"/fhir/Patient/{pid}", json={**patient(), "id": pid})
    assert again.status_code == 201
    assert again.json()["meta"]["versionId"] == "3"


def test_conditional_create(client, app):
    criteria = {"If-None-Exist": "identifier=urn:oid:1.2.36.146.595.217.0.1|42"}
    first = client.post("/fhir/Patient", json=patient(mrn="42"), headers=criteria)
    assert first.status_code == 201
    second = client.post("/fhir/Patient", json=patient(mrn="42"), headers=criteria)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert "location" not in second.headers
    assert store_snapshot(app)[0] == 1 + _definitions(app)


def test_conditional_create_multiple_matches_is_412(client):
    for _ in range(2):
        client.post("/fhir/Patient", json=patient(family="Twin"))
    response = client.post(
        "/fhir/Patient", json=patient(family="Twin"), headers={"If-None-Exist": "family=Twin"}
    )
    assert response.status_code == 412


def test_conditional_create_unknown_param_is_400(client):
    response = client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": "bogus=1"})
    assert response.status_code == 400


def test_prefer_return(client):
    minimal = client.post("/fhir/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert minimal.headers["location"]
    outcome = client.post(
        "/fhir/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"}
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"


def test_formats(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    as_json = client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/json"})
    assert as_json.headers["content-type"].startswith("application/json")
    assert client.get(f"/fhir/Patient/{pid}?_format=json").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}?_format=xml").status_code == 406
    xml = client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 406
    assert xml.json()["resourceType"] == "OperationOutcome"
    plain = client.post(
        "/fhir/Patient", json=patient(), headers={"content-type": "application/json"}
    )
    assert plain.status_code == 201


def test_summary_and_elements_on_read(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    elements = client.get(f"/fhir/Patient/{pid}?_elements=name").json()
    assert set(elements) == {"resourceType", "id", "meta", "name"}
    assert elements["meta"]["tag"][0]["code"] == "SUBSETTED"
    summary = client.get(f"/fhir/Patient/{pid}?_summary=true").json()
    assert "name" in summary and "birthDate" in summary


def test_unknown_type_and_method(client):
    unknown = client.get("/fhir/Bogus/1")
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"
    not_allowed = client.patch("/fhir/Patient/1", content=b"{}", headers=FHIR)
    assert not_allowed.status_code == 405
    assert not_allowed.json()["resourceType"] == "OperationOutcome"


def _definitions(app) -> int:
    """How many protocol definitions start-up loaded (they are resources too)."""
    from service.protocol.definitions import load_shipped_definitions

    return len(load_shipped_definitions())
