"""A real FHIR client library (fhirpy) against the service running under uvicorn, with a
token from its built-in authorization server."""

import json

import pytest
import requests
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound


def test_fhirpy_create_read_update_search_history(live, r4_validator):
    token = live.tokens.token()
    fhir = SyncFHIRClient(
        live.url,
        authorization=f"Bearer {token}",
        extra_headers={"Content-Type": "application/fhir+json"},
    )

    # create
    ann = fhir.resource(
        "Patient",
        identifier=[{"system": "urn:oid:1.2.3", "value": "fhirpy-1"}],
        name=[{"family": "Fhirpy", "given": ["Ann"]}],
        birthDate="1970-01-01",
    )
    ann.save()
    assert ann.id
    assert ann["meta"]["versionId"] == "1"

    # read
    read = fhir.reference("Patient", ann.id).to_resource()
    assert read["name"][0]["family"] == "Fhirpy"
    assert read.get_by_path(["identifier", 0, "value"]) == "fhirpy-1"

    # update
    read["gender"] = "female"
    read.save()
    again = fhir.reference("Patient", ann.id).to_resource()
    assert again["gender"] == "female"
    assert again["meta"]["versionId"] == "2"

    # search, with paging followed by the client itself
    for i in range(4):
        fhir.resource("Patient", name=[{"family": "Fhirpy", "given": [f"P{i}"]}]).save()
    found = fhir.resources("Patient").search(family="fhirpy").limit(2).fetch_all()
    assert len(found) == 5
    assert len({p.id for p in found}) == 5
    assert fhir.resources("Patient").search(family="fhirpy").count() == 5
    only = fhir.resources("Patient").search(identifier="urn:oid:1.2.3|fhirpy-1").get()
    assert only.id == ann.id
    latest = fhir.resources("Patient").search(family="fhirpy").sort("-_lastUpdated").first()
    assert latest["name"][0]["given"] == ["P3"]

    # a reference and an _include
    obs = fhir.resource(
        "Observation",
        status="final",
        code={"coding": [{"system": "http://example.org/codes", "code": "note"}]},
        subject=ann.to_reference(),
        valueString="ok",
    )
    obs.save()
    bundle = (
        fhir.resources("Observation")
        .search(subject=f"Patient/{ann.id}")
        .include("Observation", "subject")
        .fetch_raw()
    )
    kinds = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    assert kinds == ["Observation", "Patient"]

    # history
    history = fhir.execute(f"Patient/{ann.id}/_history", method="get")
    assert history["type"] == "history"
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"2"', 'W/"1"']
    assert [e["request"]["method"] for e in history["entry"]] == ["PUT", "POST"]
    type_history = fhir.execute("Patient/_history", method="get", params={"_count": 3})
    assert len(type_history["entry"]) == 3
    assert type_history["total"] == 6

    # what the live server sent is valid R4 (the independent validator, as for the TestClient)
    if r4_validator is not None:
        for sent in (bundle, history, type_history, fhir.execute("metadata", method="get")):
            assert not r4_validator.validate(json.loads(json.dumps(sent)))

    # delete, then gone
    obs.delete()
    with pytest.raises(ResourceNotFound):
        fhir.reference("Observation", obs.id).to_resource()

    # errors reach the client as OperationOutcomes
    with pytest.raises(OperationOutcome):
        fhir.resource("Patient", gender="not-a-gender").save()


def test_live_server_speaks_http(live):
    """Plain HTTP against the live server: headers a client library relies on."""
    patient = {"resourceType": "Patient", "name": [{"family": "Live"}]}
    fhir_json = {"Content-Type": "application/fhir+json"}
    refused = requests.post(f"{live.url}/Patient", json=patient, headers=fhir_json, timeout=10)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    response = requests.post(
        f"{live.url}/Patient",
        json=patient,
        headers={**fhir_json, **live.headers()},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"].startswith(f"{live.url}/Patient/")
    metadata = requests.get(f"{live.url}/metadata", timeout=10)
    assert metadata.json()["fhirVersion"] == "4.0.1"


def test_fhirpy_blind_save_of_a_care_plan_is_refused(live):
    """fhirpy's save() PUTs without If-Match: for a CarePlan (which the service changes with its
    decisions) that is a 428, and the plan is unchanged. Sending the version read works, as a
    client header or as a transaction entry's ifMatch."""
    live_server = live.url
    headers = {"Content-Type": "application/fhir+json", **live.headers()}
    fhir = SyncFHIRClient(live_server, extra_headers=headers)
    plan = fhir.resource(
        "CarePlan", status="draft", intent="plan", subject={"reference": "Patient/p1"}
    )
    plan.save()  # create: POST
    assert plan["meta"]["versionId"] == "1"

    plan["status"] = "active"
    with pytest.raises(OperationOutcome) as refused:
        plan.save()
    assert "If-Match" in str(refused.value)
    assert fhir.reference("CarePlan", plan.id).to_resource()["status"] == "draft"

    read = fhir.reference("CarePlan", plan.id).to_resource()
    versioned = SyncFHIRClient(
        live_server, extra_headers={**headers, "If-Match": f'W/"{read["meta"]["versionId"]}"'}
    )
    copy = versioned.resource("CarePlan", **read.serialize())
    copy["status"] = "active"
    copy.save()
    assert copy["meta"]["versionId"] == "2"

    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**copy.serialize(), "status": "on-hold"},
                "request": {"method": "PUT", "url": f"CarePlan/{plan.id}", "ifMatch": 'W/"2"'},
            }
        ],
    }
    answer = fhir.execute("", method="post", data=bundle)
    assert answer["entry"][0]["response"]["etag"] == 'W/"3"'
    assert fhir.reference("CarePlan", plan.id).to_resource()["status"] == "on-hold"
