"""Control characters (other than tab, CR and LF) are refused wherever a string comes in:
400 with an OperationOutcome, before anything reaches a database. PostgreSQL cannot store a
NUL (it answered 503 "database busy", so clients retried forever); SQLite stored it."""

import json
from typing import Any
from urllib.parse import quote

import pytest

from tests.api.helpers import outcome_codes, patient, store_snapshot

# NUL, the other C0 controls around the allowed ones, and the two JSON short escapes.
CONTROLS = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f"]
FORM = {"content-type": "application/x-www-form-urlencoded"}


def _refused(response: Any, where: str | None = None) -> None:
    assert response.status_code == 400, response.text
    assert outcome_codes(response) == ["value"], response.text
    issue = response.json()["issue"][0]
    assert "control character U+" in issue["diagnostics"]
    if where is not None:
        assert issue["expression"] == [where]


@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_control_characters_in_bodies_are_refused(client, app, char):
    existing = client.post("/fhir/Patient", json=patient()).json()["id"]
    before = store_snapshot(app)
    bad = patient(family=f"Sm{char}ith")
    _refused(client.post("/fhir/Patient", json=bad), "Patient.name[0].family")
    _refused(client.put(f"/fhir/Patient/{existing}", json={**bad, "id": existing}))
    # Deep inside a Bundle entry, and in a name (key) rather than a value.
    entry = {"resource": bad, "request": {"method": "POST", "url": "Patient"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    _refused(client.post("/fhir", json=bundle), "Bundle.entry[0].resource.name[0].family")
    keyed = json.dumps({**patient(), f"gen{char}der": "male"})
    _refused(client.post("/fhir/Patient", content=keyed))
    # The body of an operation.
    params = {"resourceType": "Parameters", "parameter": [{"name": "at", "valueString": char}]}
    _refused(client.post("/fhir/CarePlan/x/$evaluate", json=params))
    assert store_snapshot(app) == before


@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_control_characters_in_search_values_are_refused(client, app, char):
    client.post("/fhir/Patient", json=patient())
    before = store_snapshot(app)
    value = f"Smi{char}"
    _refused(client.get("/fhir/Patient", params={"family": value}))
    _refused(client.get("/fhir/Patient", params={f"fam{char}ily": "Smith"}))
    # Also a parameter the type does not know (ignored otherwise), and one that is not
    # a search parameter at all.
    _refused(client.get("/fhir/Patient", params={"no-such": value}))
    _refused(client.post("/fhir/Patient/_search", content=f"family={quote(value)}", headers=FORM))
    _refused(client.get("/fhir/Patient/_history", params={"_since": f"2020{char}"}))
    _refused(client.get("/fhir/_history", params={"_count": f"1{char}"}))
    _refused(
        client.get(
            "/fhir/PlanDefinition/$apply", params={"subject": "Patient/x", "url": f"urn:{char}"}
        )
    )
    _refused(
        client.post(
            "/fhir/Patient",
            json=patient(mrn="new"),
            headers={"If-None-Exist": f"identifier={quote(value)}"},
        )
    )
    # A Bundle's GET entry and its conditional create.
    entries = [
        {"request": {"method": "GET", "url": f"Patient?family={quote(value)}"}},
        {
            "resource": patient(mrn="new"),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"family={quote(value)}",
            },
        },
    ]
    answer = client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries}
    )
    assert answer.status_code == 200, answer.text
    for item in answer.json()["entry"]:
        assert item["response"]["status"] == "400 Bad Request"
        assert "control character" in item["response"]["outcome"]["issue"][0]["diagnostics"]
    assert store_snapshot(app) == before


def test_tab_cr_and_lf_are_kept(client):
    text = "line one\r\nline\ttwo\n"
    body = {**patient(), "extension": [{"url": "http://example.org/note", "valueString": text}]}
    created = client.post("/fhir/Patient", json=body)
    assert created.status_code == 201, created.text
    read = client.get(f"/fhir/Patient/{created.json()['id']}").json()
    assert read["extension"][0]["valueString"] == text
    found = client.get("/fhir/Patient", params={"family": "Smith\t"})
    assert found.status_code == 200, found.text
