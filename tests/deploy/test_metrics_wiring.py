"""/metrics and the JSON log of the real app: requests by route template, decisions by code,
database errors by kind, and no patient identifier in either."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api.errors import as_fhir_error
from service.observability import METRICS
from service.settings import Settings
from service.store.db import create_db_engine
from service.store.errors import Conflict, RetryTransaction
from service.store.repository import Tx
from service.store.runner import Store
from tests.api.scenario import day, eligible_patient, enrol, submit
from tests.deploy.processes import free_port
from tests.protocol import builders as b

# Distinctive values: any of them in /metrics or a log line would be a leak.
METRICS_TOKEN = "metrics-zq93-secret-token"
PATIENT_ID = "pt-zq93-secret"
MRN = "MRN-zq93-secret"
FAMILY = "Zqfamily"


def _sample(name: str, **labels: str) -> float:
    return METRICS.registry.get_sample_value(name, labels) or 0.0


def _scraped(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Tokens required, as in production: Prometheus scrapes with the metrics token."""
    return settings.model_copy(update={"metrics_token": METRICS_TOKEN})


def test_metrics_and_logs_of_a_real_session(client: Any, log_stream: io.StringIO) -> None:
    decisions_before = _sample("careplan_decisions_total", code="continue")
    connect_errors_before = _sample("careplan_database_errors_total", kind="connect")

    patient = {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "identifier": [{"system": "urn:test:mrn", "value": MRN}],
        "name": [{"family": FAMILY}],
    }
    assert client.put(f"/fhir/Patient/{PATIENT_ID}", json=patient).status_code == 201
    assert client.get(f"/fhir/Patient/{PATIENT_ID}").status_code == 200
    assert client.get(f"/fhir/Patient?identifier=urn:test:mrn|{MRN}").status_code == 200

    # One protocol decision through HTTP.
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    decided = submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    assert decided.status_code == 200, decided.text

    # A database that went away: the store answers 503 and counts a connect error, for the
    # read and for its AuditEvent (a read stores its event in a write unit: on SQLite through
    # the group commit, which holds the engine too).
    store = client.app.state.store
    working = store.engine
    broken = create_db_engine(f"postgresql+psycopg://careplan@127.0.0.1:{free_port()}/careplan")
    store.engine = store.group.engine = broken
    try:
        failed = client.get(f"/fhir/Patient/{PATIENT_ID}")
    finally:
        store.engine = store.group.engine = working
        broken.dispose()
    assert failed.status_code == 503, failed.text
    assert failed.headers["retry-after"] == "1"

    assert client.get("/metrics").status_code == 401  # an access token is not the metrics token
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    scraped = _scraped(text)

    def value(name: str, **labels: str) -> float:
        return scraped.get((name, frozenset(labels.items())), 0.0)

    requests = "careplan_http_requests_total"
    assert value(requests, method="PUT", route="/fhir/Patient/{id}", status="201") >= 1
    assert value(requests, method="GET", route="/fhir/Patient/{id}", status="200") >= 1
    assert value(requests, method="GET", route="/fhir/Patient/{id}", status="503") >= 1
    assert value(requests, method="GET", route="/fhir/Patient", status="200") >= 1
    submit_route = "/fhir/CarePlan/{id}/$submit-session"
    assert value(requests, method="POST", route=submit_route, status="200") >= 1
    assert (
        value("careplan_http_request_duration_seconds_count", method="POST", route=submit_route)
        >= 1
    )
    assert value("careplan_decisions_total", code="continue") == decisions_before + 1
    # The read, then the AuditEvent of its failure, which could not be stored either.
    assert value("careplan_database_errors_total", kind="connect") == connect_errors_before + 2

    access_token = client.headers["authorization"].split()[1]
    secrets = [PATIENT_ID, MRN, FAMILY, f"Patient/{b.PATIENT_ID}", plan_id, access_token]
    secrets += [METRICS_TOKEN, access_token.split(".")[1]]  # the token's claims alone too
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked into /metrics"

    log_text = log_stream.getvalue()
    entries = [json.loads(line) for line in log_text.splitlines()]
    access = [e for e in entries if e["logger"] == "careplan.access"]
    assert {"method": "GET", "route": "/fhir/Patient/{id}", "status": 503}.items() <= next(
        e for e in access if e["status"] == 503
    ).items()
    assert all(len(e["request_id"]) == 32 for e in access)
    assert any(e["route"] == submit_route for e in access)
    for secret in secrets:
        assert secret not in log_text, f"{secret!r} leaked into the log"


def test_conflict_after_exhausted_retries_is_counted(tmp_path: Any) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    before = _sample("careplan_database_errors_total", kind="conflict")

    def always_loses(_tx: Tx) -> None:
        raise RetryTransaction()

    try:
        with pytest.raises(Conflict) as raised:
            Store(engine, retries=2).run(always_loses)
    finally:
        engine.dispose()
    assert as_fhir_error(raised.value).status == 409
    assert _sample("careplan_database_errors_total", kind="conflict") == before + 1
