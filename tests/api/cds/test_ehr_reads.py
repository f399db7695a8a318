"""The data a hook needs, from the call's prefetch or from the EHR's FHIR server: the test EHR
(a second instance of this service on loopback) answers the same with the full prefetch and
with none (read with the token the call gave); an EHR that is down, stalls, fails or is not
allowed gives 412, never a hang."""

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.api.cds.helpers import (
    ORDER_SIGN,
    PATIENT_VIEW,
    cards_of,
    eligible,
    full_prefetch,
    hook_body,
    outcome,
    owned,
    patient,
    referral,
)
from tests.api.cds.plans import on_hold
from tests.api.helpers import store_snapshot


class BrokenEhr:
    """A FHIR server on loopback that answers 500, or stalls until closed."""

    def __init__(self, mode: str) -> None:
        self.requests = 0
        stop = threading.Event()
        self.stop = stop
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                if mode == "stall":
                    stop.wait(60)
                body = json.dumps({"resourceType": "OperationOutcome", "issue": []}).encode()
                self.send_response(500)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def broken(request: pytest.FixtureRequest) -> Iterator[BrokenEhr]:
    server = BrokenEhr(request.param)
    try:
        yield server
    finally:
        server.close()


def _closed_port_base() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/fhir"


def _timeless(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cards without the suggested CarePlan's `created` (the clock of each call)."""
    for card in cards:
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                action["resource"].pop("created", None)
    return cards


def _ehr_has(
    ehr: Any, patient_id: str, mrn: str, observations: list[dict[str, Any]]
) -> dict[str, Any]:
    stored = ehr.put(patient(patient_id, mrn))
    for observation in observations:
        ehr.put(observation)
    return stored


def test_full_prefetch_and_none_give_the_same_cards(client, r4_validator, ehr) -> None:
    """A patient this service does not know: eligibility from the EHR's data, prefetched or
    read from the EHR with the call's token."""
    observations = owned(eligible(), "ehr-r1")
    ehr_patient = _ehr_has(ehr, "ehr-r1", "r-unknown", observations)
    instance = "0f5b0c57-54a8-4f8e-9b8e-5d4a1c2b3e41"
    prefetched = hook_body(
        PATIENT_VIEW,
        "ehr-r1",
        fhir_server=ehr.base,
        instance=instance,
        prefetch=full_prefetch(ehr_patient, observations),
    )
    with_prefetch = cards_of(
        client.post(f"/cds-services/{PATIENT_VIEW}", json=prefetched), r4_validator
    )
    assert ehr.fhir_requests() == []
    read = hook_body(PATIENT_VIEW, "ehr-r1", fhir_server=ehr.base, instance=instance)
    without = cards_of(client.post(f"/cds-services/{PATIENT_VIEW}", json=read), r4_validator)
    assert _timeless(without) == _timeless(with_prefetch) and len(without) == 1
    asked = ehr.fhir_requests()
    assert {path for path, _ in asked} == {"/fhir/Patient/ehr-r1", "/fhir/Observation"}
    assert {token for _, token in asked} == {"Bearer ehr-access-token-7f3a"}


def test_a_known_patient_needs_only_the_patient_read(client, r4_validator, ehr) -> None:
    on_hold(client, "here-r2", "r-known")
    _ehr_has(ehr, "ehr-r2", "r-known", [])
    body = hook_body(PATIENT_VIEW, "ehr-r2", fhir_server=ehr.base)
    [card] = cards_of(client.post(f"/cds-services/{PATIENT_VIEW}", json=body), r4_validator)
    assert card["indicator"] == "warning"
    assert [path for path, _ in ehr.fhir_requests()] == ["/fhir/Patient/ehr-r2"]


def test_a_partial_prefetch_is_completed_from_the_ehr(client, r4_validator, ehr) -> None:
    observations = owned(eligible(), "ehr-r3")
    ehr_patient = _ehr_has(ehr, "ehr-r3", "r-partial", observations)
    prefetch = full_prefetch(ehr_patient, observations)
    del prefetch["screening"]
    body = hook_body(PATIENT_VIEW, "ehr-r3", fhir_server=ehr.base, prefetch=prefetch)
    [card] = cards_of(client.post(f"/cds-services/{PATIENT_VIEW}", json=body), r4_validator)
    assert "suggestions" in card
    assert [path for path, _ in ehr.fhir_requests()] == ["/fhir/Observation"]


def test_no_prefetch_and_no_fhir_server_is_412(client, app) -> None:
    before = store_snapshot(app)
    body = hook_body(PATIENT_VIEW, "ehr-x")
    issues = outcome(client.post(f"/cds-services/{PATIENT_VIEW}", json=body), 412)
    assert "Neither the 'patient' prefetch nor a fhirServer" in issues[0]["diagnostics"]
    assert store_snapshot(app) == before


@pytest.mark.parametrize("broken", ["fail"], indirect=True)
def test_a_fhir_server_not_allowed_is_never_called(client, broken: BrokenEhr) -> None:
    body = hook_body(PATIENT_VIEW, "ehr-x", fhir_server=broken.base)
    issues = outcome(client.post(f"/cds-services/{PATIENT_VIEW}", json=body), 412)
    assert "not among the allowed FHIR servers" in issues[0]["diagnostics"]
    assert broken.requests == 0


@pytest.fixture
def cds_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Allow the EHR a test names (an indirect parameter), with a short timeout."""
    extra = getattr(request, "param", None)
    return extra or {}


DOWN = _closed_port_base()


@pytest.mark.parametrize(
    "cds_settings", [{"cds_fhir_servers": DOWN, "cds_fhir_timeout_seconds": 1}], indirect=True
)
def test_an_allowed_ehr_that_is_down_is_412(client, app) -> None:
    before = store_snapshot(app)
    body = hook_body(PATIENT_VIEW, "ehr-x", fhir_server=DOWN)
    issues = outcome(client.post(f"/cds-services/{PATIENT_VIEW}", json=body), 412)
    assert "could not be reached" in issues[0]["diagnostics"]
    assert store_snapshot(app) == before


@pytest.mark.parametrize(
    ("broken", "expected"),
    [("fail", "answered HTTP 500"), ("stall", "did not answer in time")],
    indirect=["broken"],
)
def test_an_ehr_that_fails_or_stalls_is_412(broken: BrokenEhr, expected: str, database_url) -> None:
    from service.main import create_app
    from service.settings import Settings
    from tests.conftest import FhirClient

    settings = Settings(
        database_url=database_url,
        db_connect_retries=0,
        cds_fhir_servers=broken.base,
        cds_fhir_timeout_seconds=0.5,
        auth="off",  # the EHR's failure is the subject here, not the caller's JWT
    )
    with FhirClient(create_app(settings)) as client:
        body = hook_body(PATIENT_VIEW, "ehr-x", fhir_server=broken.base)
        issues = outcome(client.post(f"/cds-services/{PATIENT_VIEW}", json=body), 412)
    assert expected in issues[0]["diagnostics"]
    assert broken.requests == 1


def test_the_ehr_refusing_the_token_is_412(client, ehr) -> None:
    _ehr_has(ehr, "ehr-r4", "r-token", [])
    body = hook_body(PATIENT_VIEW, "ehr-r4", fhir_server=ehr.base, token="not-the-ehr-token")
    issues = outcome(client.post(f"/cds-services/{PATIENT_VIEW}", json=body), 412)
    assert "answered HTTP 401" in issues[0]["diagnostics"]
    assert ehr.fhir_requests() == [("/fhir/Patient/ehr-r4", "Bearer not-the-ehr-token")]
    assert "not-the-ehr-token" not in issues[0]["diagnostics"]


def test_observations_the_ehr_cannot_give_are_412_for_an_unknown_patient(client, ehr) -> None:
    """The Patient is prefetched, the screening must be read, and the EHR refuses it."""
    ehr_patient = patient("ehr-r5", "r-obs")
    prefetch = {"patient": ehr_patient}
    body = hook_body(
        ORDER_SIGN,
        "ehr-r5",
        fhir_server=ehr.base,
        token="wrong",
        prefetch=prefetch,
        draftOrders=referral(),
    )
    issues = outcome(client.post(f"/cds-services/{ORDER_SIGN}", json=body), 412)
    assert "could not be read" in issues[0]["diagnostics"]


def test_without_a_fhir_server_missing_observations_count_as_none(client, r4_validator) -> None:
    """No fhirServer to ask: the EHR chose what to send, and order-sign says what is missing."""
    body = hook_body(
        ORDER_SIGN,
        "ehr-r6",
        prefetch={"patient": patient("ehr-r6", "r-none")},
        draftOrders=referral(),
    )
    [card] = cards_of(client.post(f"/cds-services/{ORDER_SIGN}", json=body), r4_validator)
    assert "a red-flag screen" in card["summary"]
