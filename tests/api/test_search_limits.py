"""One search must not stall the service: at most CAREPLAN_MAX_SEARCH_CLAUSES criteria and
CAREPLAN_MAX_SEARCH_VALUES values per search (400 beyond), wherever a client's search comes
from (GET, POST _search, a Bundle's GET entry, If-None-Exist), and a repeated clause is
tested once. Before this, 80 copies of `name=a` took PostgreSQL 7 s and 900 ran for
minutes; on SQLite 1,000 clauses answered 503 and counted as a database error."""

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from service.main import create_app
from service.observability import METRICS
from tests.api.helpers import entry_ids, outcome_codes, patient, store_snapshot
from tests.conftest import FhirClient, authorize

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def limited(settings, r4_validator) -> Iterator[tuple[FhirClient, Any]]:
    """The service allowing 4 criteria and 6 values per search."""
    app = create_app(settings.model_copy(update={"max_search_clauses": 4, "max_search_values": 6}))
    with FhirClient(app) as client:
        client.validator = r4_validator
        authorize(client)
        client.headers["content-type"] = "application/fhir+json"
        yield client, app


def _too_costly(response: Any, what: str) -> None:
    assert response.status_code == 400, response.text
    assert outcome_codes(response) == ["too-costly"], response.text
    assert what in response.json()["issue"][0]["diagnostics"]


FOUR = [("family", "Smith"), ("given", "Ann"), ("gender", "female"), ("birthdate", "1970")]


def test_criteria_beyond_the_limit_are_refused(limited):
    client, app = limited
    pid = client.post("/fhir/Patient", json={**patient(), "gender": "female"}).json()["id"]
    at_limit = client.get("/fhir/Patient", params=FOUR)
    assert at_limit.status_code == 200, at_limit.text
    assert entry_ids(at_limit.json()) == [pid]
    for extra in [("_id", pid), ("_sort", "family"), ("_lastUpdated", "gt2000")]:
        _too_costly(client.get("/fhir/Patient", params=[*FOUR, extra]), "at most 4 criteria")
    # Each _sort key and _include counts.
    sorted_ = [("family", "Smith"), ("_sort", "family,given,birthdate,gender")]
    _too_costly(client.get("/fhir/Patient", params=sorted_), "at most 4 criteria")
    includes = [
        ("subject", "Patient/x"),
        ("status", "final"),
        ("code", "x"),
        ("_include", "Observation:subject"),
        ("_include", "Observation:based-on"),
    ]
    _too_costly(client.get("/fhir/Observation", params=includes), "at most 4 criteria")
    # Parameters the type does not know are ignored: they do not count.
    assert client.get("/fhir/Patient", params=[*FOUR, ("bogus", "1")]).status_code == 200
    # POST _search, a Bundle's GET entry and If-None-Exist have the same limit.
    five = urlencode([*FOUR, ("_id", pid)])
    _too_costly(client.post("/fhir/Patient/_search", content=five, headers=FORM), "at most 4")
    entry = {"request": {"method": "GET", "url": f"Patient?{five}"}}
    batch = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [entry]})
    answer = batch.json()["entry"][0]["response"]
    assert answer["status"] == "400 Bad Request"
    assert "at most 4 criteria" in answer["outcome"]["issue"][0]["diagnostics"]
    before = store_snapshot(app)
    _too_costly(
        client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": five}),
        "at most 4 criteria",
    )
    assert store_snapshot(app) == before


def test_values_beyond_the_limit_are_refused(limited):
    client, _ = limited
    ids = [client.post("/fhir/Patient", json=patient(mrn=str(i))).json()["id"] for i in range(6)]
    at_limit = client.get("/fhir/Patient", params={"_id": ",".join(ids)})
    assert at_limit.status_code == 200, at_limit.text
    assert sorted(entry_ids(at_limit.json())) == sorted(ids)
    _too_costly(
        client.get("/fhir/Patient", params={"_id": ",".join([*ids, "other"])}), "at most 6 values"
    )
    # Counted over all parameters together.
    split = [("_id", ",".join(ids[:4])), ("family", "Smith,Jones,Brown")]
    _too_costly(client.get("/fhir/Patient", params=split), "at most 6 values")


def test_a_repeated_clause_is_tested_once(limited):
    """Copies of one clause AND nothing new: they neither count against the limit nor cost."""
    client, _ = limited
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    copies = client.get("/fhir/Patient", params=[("name", "smi")] * 500 + [("_sort", "-_id")] * 9)
    assert copies.status_code == 200, copies.text
    assert entry_ids(copies.json()) == [pid]


def test_a_thousand_clauses_are_a_client_error_not_a_database_error(client):
    """With the default limits: 400, and nothing counted as a database error."""
    before = METRICS.registry.get_sample_value(
        "careplan_database_errors_total", {"kind": "operational"}
    )
    params = [("name", f"n{i}") for i in range(1000)]
    _too_costly(client.get("/fhir/Patient", params=params), "at most 32 criteria")
    after = METRICS.registry.get_sample_value(
        "careplan_database_errors_total", {"kind": "operational"}
    )
    assert after == before
