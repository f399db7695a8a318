"""PostgreSQL cancels a statement that runs longer than CAREPLAN_DB_STATEMENT_TIMEOUT_MS:
the request answers 503 with a clear OperationOutcome, nothing is written, the connection
goes back to the pool and the service keeps answering.

The timeout here is deliberately small and the search deliberately expensive (thirty string
clauses that the planner must order: over a second of planning alone), so the outcome does
not hinge on this machine's speed; nothing asserts how long anything took.
"""

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from service.main import create_app
from service.observability import METRICS
from service.settings import Settings
from service.store.db import create_db_engine, limit_statement_time
from service.store.errors import TimedOut
from service.store.runner import Store
from tests.conftest import FhirClient, authorize, truncate_postgres

pytestmark = pytest.mark.postgres
TIMEOUT_MS = 25


@pytest.fixture
def postgres_url(postgres_schema_url: str) -> str:
    truncate_postgres(postgres_schema_url)
    return postgres_schema_url


def _patients(url: str, count: int) -> None:
    """Patients written without a timeout (a separate engine)."""
    engine = create_db_engine(url)
    store = Store(engine)
    bodies = [
        (
            {"resourceType": "Patient", "name": [{"family": f"a{i}", "given": ["ann"]}]},
            f"p{i}",
        )
        for i in range(count)
    ]
    store.run(lambda tx: tx.create_many(bodies))
    engine.dispose()


@pytest.fixture
def timed_client(postgres_url: str) -> Iterator[tuple[FhirClient, Any]]:
    """The service with a 25 ms statement timeout (and room for thirty clauses)."""
    _patients(postgres_url, 200)
    settings = Settings(
        database_url=postgres_url,
        db_connect_retries=0,
        load_protocol=False,
        db_statement_timeout_ms=TIMEOUT_MS,
        max_search_clauses=40,
        auth="required",
    )
    app = create_app(settings)
    with FhirClient(app) as client:
        authorize(client)
        client.headers["content-type"] = "application/fhir+json"
        yield client, app


def _timeouts() -> float:
    value = METRICS.registry.get_sample_value("careplan_database_errors_total", {"kind": "timeout"})
    return value or 0.0


def test_an_expensive_search_times_out_and_frees_its_connection(timed_client):
    client, app = timed_client
    # Thirty clauses the query cannot merge ("a", "a ", ...: the same name once normalized).
    params = [(("name", "family", "given")[i % 3], "a" + " " * i) for i in range(30)]
    before = _timeouts()
    response = client.get("/fhir/Patient", params=params)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    issue = response.json()["issue"][0]
    assert issue["code"] == "too-costly"
    assert "took too long" in issue["diagnostics"]
    assert _timeouts() == before + 1
    pool = app.state.store.engine.pool
    assert pool.checkedout() == 0
    # The service goes on answering, on the same pool.
    read = client.get("/fhir/Patient/p1")
    assert read.status_code == 200, read.text


def test_the_store_reports_a_cancelled_statement_as_timed_out(postgres_url):
    engine = create_db_engine(postgres_url)
    limit_statement_time(engine, TIMEOUT_MS)
    store = Store(engine)
    try:
        with pytest.raises(TimedOut):
            store.run(lambda tx: tx.conn.execute(sa.text("SELECT pg_sleep(5)")).all())
        assert engine.pool.checkedout() == 0
        # A write in the same unit as the cancelled statement is not kept.
        with pytest.raises(TimedOut):
            store.run(
                lambda tx: (
                    tx.create({"resourceType": "Patient"}, "kept-not"),
                    tx.conn.execute(sa.text("SELECT pg_sleep(5)")).all(),
                )
            )
        assert store.run(lambda tx: tx.get("Patient", "kept-not")) is None
        # Statements within the limit run as before.
        assert store.run(lambda tx: tx.conn.execute(sa.text("SELECT 1")).scalar_one()) == 1
    finally:
        engine.dispose()


def test_no_timeout_when_set_to_zero(postgres_url):
    engine = create_db_engine(postgres_url)
    limit_statement_time(engine, 0)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SHOW statement_timeout")).scalar_one() == "0"
    finally:
        engine.dispose()
