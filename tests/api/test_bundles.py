"""Batch and transaction Bundles: urn:uuid resolution, conditional create, order, atomicity."""

import json
from typing import Any

import pytest

from tests.api.helpers import outcome_codes, patient, store_snapshot

S = "urn:oid:1.2.36.146.595.217.0.1"
PAT = "urn:uuid:7f3a9a8e-1d7c-4c5e-9a55-2b8e4c0d1a01"
OBS = "urn:uuid:0b6b1c1e-4f0c-4a7e-8a7a-9d1f2f3a4b02"


def _note(subject: str, status: str = "final") -> dict[str, Any]:
    """An Observation outside the protocol (no pain code), so no protocol rule applies."""
    return {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": "http://example.org/codes", "code": "note"}]},
        "subject": {"reference": subject},
        "valueString": "fine",
    }


def _entry(method: str, url: str, resource: dict | None = None, **request: Any) -> dict:
    entry: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        entry["resource"] = resource
    return entry


def _bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _post(client, bundle: dict, **kwargs: Any):
    return client.post("/fhir", json=bundle, **kwargs)


def test_transaction_resolves_urn_uuid(client):
    response = _post(
        client,
        _bundle(
            "transaction",
            {"fullUrl": OBS, **_entry("POST", "Observation", _note(PAT))},
            {"fullUrl": PAT, **_entry("POST", "Patient", patient("Urn"))},
        ),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    obs_entry, pat_entry = result["entry"]
    assert obs_entry["response"]["status"].startswith("201")
    assert pat_entry["response"]["status"].startswith("201")
    pid = pat_entry["resource"]["id"]
    assert pat_entry["response"]["location"].startswith(f"Patient/{pid}/_history/1")
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{pid}"
    stored = client.get(f"/fhir/Observation/{obs_entry['resource']['id']}").json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    found = client.get("/fhir/Observation", params={"subject": f"Patient/{pid}"}).json()
    assert found["total"] == 1


def test_transaction_conditional_create(client, app):
    existing = client.post("/fhir/Patient", json=patient(mrn="77")).json()["id"]
    before = store_snapshot(app)
    response = _post(
        client,
        _bundle(
            "transaction",
            {
                "fullUrl": PAT,
                **_entry("POST", "Patient", patient(mrn="77"), ifNoneExist=f"identifier={S}|77"),
            },
            {"fullUrl": OBS, **_entry("POST", "Observation", _note(PAT))},
        ),
    )
    assert response.status_code == 200, response.text
    pat_entry, obs_entry = response.json()["entry"]
    assert pat_entry["response"]["status"].startswith("200")
    assert pat_entry["resource"]["id"] == existing
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{existing}"
    # Only the Observation was written.
    assert store_snapshot(app) == (before[0] + 1, before[1] + 1)
    # Without a match, the conditional create creates and the reference follows.
    response = _post(
        client,
        _bundle(
            "transaction",
            {
                "fullUrl": PAT,
                **_entry("POST", "Patient", patient(mrn="78"), ifNoneExist=f"identifier={S}|78"),
            },
            {"fullUrl": OBS, **_entry("POST", "Observation", _note(PAT))},
        ),
    )
    pat_entry, obs_entry = response.json()["entry"]
    assert pat_entry["response"]["status"].startswith("201")
    assert pat_entry["resource"]["id"] != existing
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{pat_entry['resource']['id']}"


def test_transaction_put_delete_get_in_spec_order(client):
    old = client.post("/fhir/Patient", json=patient("Old", "1")).json()["id"]
    kept = client.post("/fhir/Patient", json=patient("Kept", "2")).json()["id"]
    response = _post(
        client,
        _bundle(
            "transaction",
            # listed GET first, but GETs run last: they see the other entries' writes
            _entry("GET", f"Patient?identifier={S}|3,{S}|4,{S}|1"),
            _entry("GET", f"Patient/{kept}"),
            _entry("PUT", "Patient/put-1", {**patient("Put", "4"), "id": "put-1"}),
            _entry(
                "PUT", f"Patient/{kept}", {**patient("Kept2", "2"), "id": kept}, ifMatch='W/"1"'
            ),
            _entry("POST", "Patient", patient("New", "3")),
            _entry("DELETE", f"Patient/{old}"),
        ),
    )
    assert response.status_code == 200, response.text
    search, read, put_new, put_kept, post, delete = response.json()["entry"]
    assert delete["response"]["status"].startswith("204")
    assert post["response"]["status"].startswith("201")
    assert put_new["response"]["status"].startswith("201")
    assert put_kept["response"]["status"].startswith("200")
    assert put_kept["response"]["etag"] == 'W/"2"'
    assert read["resource"]["name"][0]["family"] == "Kept2"
    assert read["response"]["status"].startswith("200")
    found = {e["resource"]["id"] for e in search["resource"].get("entry", [])}
    assert found == {post["resource"]["id"], "put-1"}  # the deleted one is gone
    assert client.get(f"/fhir/Patient/{old}").status_code == 410


def _rejected_transaction(client, app, *later: dict, status: int, code: str) -> None:
    existing = client.post("/fhir/Patient", json=patient("Existing")).json()["id"]
    doomed = client.post("/fhir/Patient", json=patient("Doomed")).json()["id"]
    before = store_snapshot(app)
    response = _post(
        client,
        _bundle(
            "transaction",
            {"fullUrl": PAT, **_entry("POST", "Patient", patient("Tx"))},
            {"fullUrl": OBS, **_entry("POST", "Observation", _note(PAT))},
            _entry("PUT", f"Patient/{existing}", {**patient("Changed"), "id": existing}),
            _entry("DELETE", f"Patient/{doomed}"),
            *later,
        ),
    )
    assert response.status_code == status, response.text
    assert code in outcome_codes(response)
    assert store_snapshot(app) == before
    assert client.get(f"/fhir/Patient/{existing}").json()["name"][0]["family"] == "Existing"
    assert client.get(f"/fhir/Patient/{doomed}").status_code == 200
    assert client.get("/fhir/Patient", params={"family": "Tx"}).json()["total"] == 0


def test_transaction_may_not_change_one_resource_twice(client, app):
    old = client.post("/fhir/Patient", json=patient("Old", "9")).json()["id"]
    before = store_snapshot(app)
    for second in (
        _entry("PUT", f"Patient/{old}", {**patient("New", "9"), "id": old}),
        _entry("DELETE", f"Patient/{old}"),
        # a conditional create that resolves to the deleted resource
        _entry("POST", "Patient", patient("New", "9"), ifNoneExist=f"identifier={S}|9"),
    ):
        response = _post(client, _bundle("transaction", _entry("DELETE", f"Patient/{old}"), second))
        assert response.status_code == 400, response.text
        assert outcome_codes(response) == ["invalid"]
    assert store_snapshot(app) == before


def test_transaction_rolls_back_on_invalid_resource(client, app):
    bad = {**_note("Patient/x"), "status": "finished"}
    _rejected_transaction(
        client, app, _entry("POST", "Observation", bad), status=400, code="code-invalid"
    )


def test_transaction_rolls_back_on_business_rule(client, app):
    # Passes structural validation; rejected by a rule inside the database transaction.
    pain = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
        "subject": {"reference": PAT},
        "effectiveDateTime": "2026-01-05T10:00:00Z",
        "valueQuantity": {
            "value": 4.5,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
    }
    _rejected_transaction(
        client, app, _entry("POST", "Observation", pain), status=422, code="business-rule"
    )


def test_transaction_rolls_back_on_stale_if_match(client, app):
    other = client.post("/fhir/Patient", json=patient("Other")).json()["id"]
    client.put(f"/fhir/Patient/{other}", json={**patient("Other2"), "id": other})
    stale = _entry("PUT", f"Patient/{other}", {**patient("X"), "id": other}, ifMatch='W/"1"')
    _rejected_transaction(client, app, stale, status=412, code="conflict")


@pytest.mark.parametrize(
    ("later", "status", "code"),
    [
        (_entry("GET", "Patient/unknown-id"), 404, "not-found"),
        (_entry("DELETE", "Patient/unknown-id"), 404, "not-found"),
        (
            _entry("POST", "Observation", _note("urn:uuid:00000000-0000-0000-0000-00000000dead")),
            400,
            "invalid",
        ),
        (_entry("PUT", "Patient/a", {**patient(), "id": "b"}), 400, "invalid"),
        (_entry("POST", "Patient", {**patient(), "bogus": 1}), 400, "structure"),
        (_entry("PATCH", "Patient/a", patient()), 400, "not-supported"),
        ({"resource": patient()}, 400, "required"),
    ],
)
def test_transaction_rolls_back_on_bad_entry(client, app, later, status, code):
    _rejected_transaction(client, app, later, status=status, code=code)


def test_batch_entries_are_independent(client, app):
    existing = client.post("/fhir/Patient", json=patient("Existing")).json()["id"]
    client.put(f"/fhir/Patient/{existing}", json={**patient("Existing2"), "id": existing})
    before = store_snapshot(app)
    response = _post(
        client,
        _bundle(
            "batch",
            _entry("POST", "Patient", patient("Good")),
            _entry("POST", "Observation", {**_note(f"Patient/{existing}"), "status": "finished"}),
            _entry("PUT", f"Patient/{existing}", {**patient("X"), "id": existing}, ifMatch='W/"1"'),
            _entry("GET", "Patient/unknown-id"),
            _entry("GET", f"Patient/{existing}"),
            _entry("POST", "Observation", _note(f"Patient/{existing}")),
            {"request": {"method": "POST"}},
        ),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in result["entry"]]
    assert statuses == ["201", "400", "412", "404", "200", "201", "400"]
    for index in (1, 2, 3, 6):
        outcome = result["entry"][index]["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome"
        assert "resource" not in result["entry"][index]
    assert result["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "code-invalid"
    assert result["entry"][2]["response"]["outcome"]["issue"][0]["code"] == "conflict"
    assert result["entry"][3]["response"]["outcome"]["issue"][0]["code"] == "not-found"
    assert store_snapshot(app) == (before[0] + 2, before[1] + 2)
    assert client.get(f"/fhir/Patient/{existing}").json()["name"][0]["family"] == "Existing2"


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"request": "x"}]},
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "transaction", "entry": [1]},
    ],
)
def test_bad_bundles(client, app, body):
    before = store_snapshot(app)
    response = _post(client, body)
    assert response.status_code == 400, response.text
    assert outcome_codes(response)
    assert store_snapshot(app) == before


def test_empty_transaction_and_batch(client):
    for kind in ("transaction", "batch"):
        response = _post(client, {"resourceType": "Bundle", "type": kind})
        assert response.status_code == 200
        assert response.json()["type"] == f"{kind}-response"


def test_batch_entry_with_an_unexpected_failure_fails_alone(client, app, monkeypatch, log_stream):
    """A bug in one entry (not a FHIR or store error) is that entry's 500: the entries before
    it stay committed and are reported, so a client never retries (and duplicates) them."""
    from service.usecases import crud

    real_create_in = crud.create_in

    def create_in(tx, body, *args, **kwargs):
        if body.get("name", [{}])[0].get("family") == "Boom":
            raise RuntimeError("secret internal detail")
        return real_create_in(tx, body, *args, **kwargs)

    monkeypatch.setattr(crud, "create_in", create_in)
    before = store_snapshot(app)
    response = _post(
        client,
        _bundle(
            "batch",
            _entry("POST", "Patient", patient("Good")),
            _entry("POST", "Patient", patient("Boom")),
            _entry("POST", "Patient", patient("After")),
        ),
        headers={"X-Request-ID": "batch-boom-1"},
    )
    assert response.status_code == 200, response.text
    assert "secret" not in response.text
    result = response.json()
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses[0].startswith("201") and statuses[2].startswith("201")
    assert statuses[1] == "500 Internal Server Error"
    outcome = result["entry"][1]["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert [issue["code"] for issue in outcome["issue"]] == ["exception"]
    assert store_snapshot(app) == (before[0] + 2, before[1] + 2)
    # Logged once, with its stack trace and the request's id.
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert "RuntimeError: secret internal detail" in errors[0]["exception"]
    assert errors[0]["request_id"] == "batch-boom-1"


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_entries_of_types_the_server_does_not_serve_are_404(client, app, kind):
    """As in REST (`GET /fhir/Foo` is a 404): an unknown type is not an empty searchset, and a
    valid R4 type without routes here (Medication) is not stored through a Bundle either."""
    entries = [
        _entry("GET", "Foo"),
        _entry("GET", "Foo/1"),
        _entry("GET", "Medication?code=x"),
        _entry("POST", "Medication", {"resourceType": "Medication"}),
        _entry("PUT", "Medication/m1", {"resourceType": "Medication", "id": "m1"}),
        _entry("DELETE", "Foo/1"),
    ]
    before = store_snapshot(app)
    if kind == "batch":
        response = _post(client, _bundle("batch", *entries))
        assert response.status_code == 200, response.text
        for entry in response.json()["entry"]:
            assert entry["response"]["status"] == "404 Not Found", entry
            assert entry["response"]["outcome"]["issue"][0]["code"] == "not-found"
    else:
        for entry in entries:
            response = _post(client, _bundle("transaction", entry))
            assert response.status_code == 404, response.text
            assert outcome_codes(response) == ["not-found"]
    assert store_snapshot(app) == before
