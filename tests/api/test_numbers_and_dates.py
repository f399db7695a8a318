"""Numbers and dates at the edge of what the store can hold: a 400/422 OperationOutcome that
names the element, nothing stored, never a 500.

- decimals: integers beyond 64 bits, and floating-point values that overflow or underflow
  (`1e-400` was stored as 0), cannot be stored exactly;
- dates whose UTC offset moves them out of the years 0001-9999 (in a resource, a search,
  `_since`, `_lastUpdated` and `$evaluate`'s `at`);
- numbers of thousands of digits in `_count` (REST, history, Bundle GET entries), in
  `If-Match`, `Content-Length` and a CarePlan's level code (Python's int() refuses more than
  4,300 digits with a ValueError).
"""

from typing import Any

import pytest

from service.protocol.codes import CAREPLAN_CS
from tests.api.helpers import outcome_codes, patient, store_snapshot
from tests.api.scenario import PLAN, day, eligible_patient, enrol
from tests.protocol import builders as b

HUGE = "9" * 5000


def _observation_text(value: str) -> bytes:
    """An Observation whose valueQuantity.value is `value`, written as is (JSON number)."""
    return (
        b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, '
        b'"valueQuantity": {"value": ' + value.encode() + b', "unit": "mg"}}'
    )


def _outcome(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


@pytest.mark.parametrize(
    "value",
    [
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "18446744073709551616",
        HUGE,
        "1e-400",
        "-2.5E-999",
        "1e400",
        "-1.7976931348623159e308",
    ],
)
def test_a_decimal_that_cannot_be_stored_exactly_is_refused(client, app, value):
    before = store_snapshot(app)
    issue = _outcome(client.post("/fhir/Observation", content=_observation_text(value)))
    assert issue["code"] == "value"
    assert issue["expression"] == ["Observation.valueQuantity.value"]
    assert "cannot be stored exactly" in issue["diagnostics"]
    # Inside a Bundle entry: named by its path there.
    entry = b'{"resource": ' + _observation_text(value) + b', "request": '
    entry += b'{"method": "POST", "url": "Observation"}}'
    bundle = b'{"resourceType": "Bundle", "type": "transaction", "entry": [' + entry + b"]}"
    issue = _outcome(client.post("/fhir", content=bundle))
    assert issue["expression"] == ["Bundle.entry[0].resource.valueQuantity.value"]
    assert store_snapshot(app) == before


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("9223372036854775807", 9223372036854775807),
        ("-9223372036854775808", -9223372036854775808),
        ("0.0", 0.0),
        ("0e-400", 0.0),
        ("1e-300", 1e-300),
        ("1.7976931348623157e308", 1.7976931348623157e308),
    ],
)
def test_decimals_at_the_edge_that_can_be_stored_are_kept(client, value, stored):
    created = client.post("/fhir/Observation", content=_observation_text(value))
    assert created.status_code == 201, created.text
    read = client.get(f"/fhir/Observation/{created.json()['id']}").json()
    assert read["valueQuantity"]["value"] == stored


EDGES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.mark.parametrize("moment", EDGES)
def test_a_date_at_the_calendar_edge_in_a_resource_is_refused(client, app, moment):
    before = store_snapshot(app)
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "effectivePeriod": {"start": moment},
    }
    issue = _outcome(client.post("/fhir/Observation", json=body))
    assert issue["expression"] == ["Observation.effectivePeriod.start"]
    assert "outside the years 0001-9999" in issue["diagnostics"]
    issued = {**body, "effectivePeriod": {"start": "2024-01-01"}, "issued": moment}
    assert _outcome(client.post("/fhir/Observation", json=issued))["expression"] == [
        "Observation.issued"
    ]
    assert store_snapshot(app) == before
    # A date alone, or a dateTime at the edge in UTC, is representable and kept.
    for fine in ("0001-01-01", "9999-12-31", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        kept = client.post("/fhir/Observation", json={**body, "effectivePeriod": {"start": fine}})
        assert kept.status_code == 201, kept.text


def test_a_leap_second_is_refused(client, app):
    """R4's regex allows second 60, which no datetime holds: stored, it broke every later
    decision that read it (a 500)."""
    before = store_snapshot(app)
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "effectiveDateTime": "2016-12-31T23:59:60Z",
    }
    issue = _outcome(client.post("/fhir/Observation", json=body))
    assert issue["expression"] == ["Observation.effectiveDateTime"]
    assert "leap seconds" in issue["diagnostics"]
    issue = _outcome(client.get("/fhir/Observation", params={"date": "2016-12-31T23:59:60Z"}))
    assert "leap seconds" in issue["diagnostics"]
    assert store_snapshot(app) == before


@pytest.mark.parametrize("moment", EDGES)
def test_a_date_at_the_calendar_edge_in_a_search_is_refused(client, moment):
    for prefix in ("", "ge", "le", "ap"):
        for path, param in [
            ("/fhir/Observation", "date"),
            ("/fhir/Patient", "birthdate"),
            ("/fhir/Patient", "_lastUpdated"),
        ]:
            issue = _outcome(client.get(path, params={param: prefix + moment}))
            assert issue["code"] == "invalid"
            assert "outside the years 0001-9999" in issue["diagnostics"]
    for path in ("/fhir/_history", "/fhir/Patient/_history"):
        issue = _outcome(client.get(path, params={"_since": moment}))
        assert "outside the years 0001-9999" in issue["diagnostics"]


@pytest.fixture
def plan_id(client) -> str:
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan = enrol(client)
    # Started in year 1, so an `at` there passes the plan-start check and reaches the
    # look-back, whose window would begin before year 1.
    body = client.get(f"/fhir/CarePlan/{plan}").json()
    body["period"] = {**body.get("period", {}), "start": "0001-01-01"}
    etag = f'W/"{body["meta"]["versionId"]}"'
    assert (
        client.put(f"/fhir/CarePlan/{plan}", json=body, headers={"If-Match": etag}).status_code
        == 200
    )
    return plan


@pytest.mark.parametrize(
    ("at", "status"),
    [
        (EDGES[0], 400),
        (EDGES[1], 400),
        ("0001-01-01T20:00:00+14:00", 422),  # in year 1, but its look-back is not
        ("0001-01-02", 422),
    ],
)
def test_evaluate_at_the_calendar_edge_is_refused(client, app, plan_id, at, status):
    before = store_snapshot(app)
    body = {"resourceType": "Parameters", "parameter": [{"name": "at", "valueDateTime": at}]}
    issue = _outcome(client.post(f"/fhir/CarePlan/{plan_id}/$evaluate", json=body), status)
    assert "0001-9999" in issue["diagnostics"]
    assert store_snapshot(app) == before


def test_thousands_of_digits_in_count_are_refused(client, app):
    client.post("/fhir/Patient", json=patient())
    for path in ("/fhir/Patient", "/fhir/Patient/_history", "/fhir/_history"):
        issue = _outcome(client.get(path, params={"_count": HUGE}))
        assert issue["code"] == "invalid"
        assert "_count" in issue["diagnostics"]
    issue = _outcome(
        client.post(
            "/fhir/Patient/_search",
            content=f"_count={HUGE}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    )
    assert "_count" in issue["diagnostics"]
    for kind in ("batch", "transaction"):
        entry = {"request": {"method": "GET", "url": f"Patient?_count={HUGE}"}}
        response = client.post(
            "/fhir", json={"resourceType": "Bundle", "type": kind, "entry": [entry]}
        )
        if kind == "batch":
            assert response.status_code == 200, response.text
            answer = response.json()["entry"][0]["response"]
            assert answer["status"] == "400 Bad Request"
            assert "_count" in answer["outcome"]["issue"][0]["diagnostics"]
        else:
            assert "_count" in _outcome(response)["diagnostics"]
    # Still capped (not refused) when it is a plain large number.
    capped = client.get("/fhir/Patient", params={"_count": "999999999999999999"})
    assert capped.status_code == 200, capped.text


def test_thousands_of_digits_in_if_match_are_refused(client, app):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    before = store_snapshot(app)
    body = {**patient("Other"), "id": pid}
    for value in (f'W/"{HUGE}"', f'"{HUGE}"', HUGE):
        issue = _outcome(client.put(f"/fhir/Patient/{pid}", json=body, headers={"If-Match": value}))
        assert issue["code"] == "invalid"
    entry = {
        "resource": body,
        "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": f'W/"{HUGE}"'},
    }
    response = client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    )
    assert _outcome(response)["expression"] == ["Bundle.entry[0].request.ifMatch"]
    batch = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [entry]})
    assert batch.json()["entry"][0]["response"]["status"] == "400 Bad Request"
    # A Content-Length of thousands of digits is too large a body, not a crash.
    response = client.post("/fhir/Patient", content=b"{}", headers={"content-length": HUGE})
    assert response.status_code == 413, response.text
    assert store_snapshot(app) == before
    assert outcome_codes(client.get("/fhir/Patient/x/_history/" + HUGE)) == ["not-found"]


@pytest.mark.parametrize("number", [HUGE, "²", "٣"])
def test_a_protocol_level_of_thousands_of_digits_is_refused(client, app, number):
    """A CarePlan naming a level by a code `level-<n>` of the service's CodeSystem."""
    eligible_patient(client)
    applied = client.get(f"{PLAN}/$apply", params={"subject": f"Patient/{b.PATIENT_ID}"}).json()
    applied.pop("id", None)
    detail = applied["activity"][0]["detail"]
    detail.setdefault("code", {}).setdefault("coding", []).append(
        {"system": CAREPLAN_CS, "code": f"level-{number}"}
    )
    before = store_snapshot(app)
    issue = _outcome(client.post("/fhir/CarePlan", json=applied), 422)
    assert "is not a level of this protocol" in issue["diagnostics"]
    assert issue["expression"] == ["CarePlan.activity[0].detail.code"]
    assert store_snapshot(app) == before
