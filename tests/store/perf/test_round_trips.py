"""Round trips to PostgreSQL per request, counted exactly (tests/support/round_trips.py).

Each is the network's latency when the database is on another host, so a change that adds
one should be a choice, not an accident: these fail when a count goes up (and when it goes
down, so the numbers here and in bench/README.md stay true).
"""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.main import create_app
from service.settings import Settings
from tests.api.scenario import day, eligible_patient, enrol, submit
from tests.conftest import truncate_postgres
from tests.support.round_trips import RoundTripCounter

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def counter(postgres_schema_url: str) -> RoundTripCounter:
    server = make_url(postgres_schema_url)
    proxy = RoundTripCounter((server.host or "127.0.0.1", server.port or 5432))
    proxy.start()
    return proxy


@pytest.fixture
def client(postgres_schema_url: str, counter: RoundTripCounter) -> Iterator[TestClient]:
    truncate_postgres(postgres_schema_url)
    # The store's own round trips: token checks (which read the database only when their
    # short-lived caches expire, see usecases/credentials.py) would make the counts depend on
    # timing; so would the delivery worker's polling.
    settings = Settings(
        database_url=counter.url(postgres_schema_url),
        db_connect_retries=0,
        auth="off",
        delivery_worker=False,
    )
    with TestClient(create_app(settings)) as test_client:
        test_client.headers["content-type"] = "application/fhir+json"
        yield test_client


def _trips(counter: RoundTripCounter, call: Any) -> tuple[int, Any]:
    with counter.counting() as counted:
        response = call()
    assert response.status_code < 300, response.text
    return counted[0], response


def test_a_session_submission_takes_eight_round_trips(client: TestClient, counter) -> None:
    """BEGIN with the CarePlan, locked; its PlanDefinition, Patient and an earlier submission
    of the session; the new Observations (RETURNING their keys); their history and index rows
    with the record window and whether this was decided before; whether a late decision was
    stored after the newest; the decision's resources (RETURNING); their history and index
    rows and the CarePlan's new version with the AuditEvent (RETURNING its key); its history
    and index rows and COMMIT."""
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    trips, _ = _trips(counter, lambda: submit(client, plan_id, [3, 2, 1, 0, 0], day(2)))
    assert trips == 8


def test_a_create_takes_three_and_a_read_three(client: TestClient, counter) -> None:
    """A create: BEGIN with the INSERT returning its key; its history and index rows with the
    AuditEvent's INSERT returning its key; the event's history and index rows with COMMIT. A
    read stores its AuditEvent before it answers (bench/README.md, "Audit of reads"): BEGIN
    with the read; the event's INSERT; its rows with COMMIT."""
    trips, created = _trips(
        counter, lambda: client.post("/fhir/Patient", json={"resourceType": "Patient"})
    )
    assert trips == 3
    trips, _ = _trips(counter, lambda: client.get(created.headers["location"]))
    assert trips == 3
