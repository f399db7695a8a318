"""ObservabilityMiddleware, metrics and JSON logging on a tiny Starlette app."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from service import observability
from service.observability import (
    Metrics,
    ObservabilityMiddleware,
    configure_logging,
    get_request_id,
    metrics_response,
    record_db_error,
    record_decision,
)


async def patient(request: Request) -> JSONResponse:
    # The app sees the same id the middleware returns (contextvar).
    return JSONResponse({"id": request.path_params["id"], "request_id": get_request_id()})


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(metrics: Metrics) -> Iterator[TestClient]:
    app = Starlette(
        routes=[
            Route("/fhir/Patient/{id}", patient),
            Route("/boom", boom),
            Route("/healthz", healthz),
        ]
    )
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _access_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [line for line in _lines(stream) if line["logger"] == "careplan.access"]


# ---------------------------------------------------------------------------- request id


def test_given_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/fhir/Patient/p1", headers={"X-Request-ID": "abc.DEF_1-2"})
    assert response.headers["X-Request-ID"] == "abc.DEF_1-2"
    assert response.json()["request_id"] == "abc.DEF_1-2"


@pytest.mark.parametrize(
    "bad",
    ["has space", "semi;colon", "x" * 129, "<script>", "new\\nline", "ünïcode"],
)
def test_invalid_request_id_is_replaced(client: TestClient, bad: str) -> None:
    response = client.get("/fhir/Patient/p1", headers={"X-Request-ID": bad.encode("utf-8")})
    rid = response.headers["X-Request-ID"]
    assert rid != bad
    assert re.fullmatch(r"[0-9a-f]{32}", rid)


def test_missing_request_id_is_generated_and_unique(client: TestClient) -> None:
    first = client.get("/fhir/Patient/p1").headers["X-Request-ID"]
    second = client.get("/fhir/Patient/p1").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_request_id_does_not_leak_out_of_the_request(client: TestClient) -> None:
    client.get("/fhir/Patient/p1")
    assert get_request_id() is None


# ---------------------------------------------------------------------------- metrics


def test_route_template_is_the_label_not_the_path(client: TestClient, metrics: Metrics) -> None:
    client.get("/fhir/Patient/123")
    client.get("/fhir/Patient/456")
    labels = {"method": "GET", "route": "/fhir/Patient/{id}", "status": "200"}
    assert metrics.registry.get_sample_value("careplan_http_requests_total", labels) == 2
    text = metrics.render()[0].decode()
    # Label values only: sample values are timings and may contain any digits.
    label_values = {
        value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    }
    assert not any("123" in v or "456" in v for v in label_values)
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "route" in sample.labels
    }
    assert routes == {"/fhir/Patient/{id}"}
    count = metrics.registry.get_sample_value(
        "careplan_http_request_duration_seconds_count",
        {"method": "GET", "route": "/fhir/Patient/{id}"},
    )
    assert count == 2


def test_unmatched_and_failing_requests(client: TestClient, metrics: Metrics) -> None:
    assert client.get("/no/such/thing/789").status_code == 404
    assert client.get("/boom").status_code == 500
    get = metrics.registry.get_sample_value
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert get("careplan_http_requests_total", unmatched) == 1
    assert get("careplan_http_requests_total", {"method": "GET", "route": "/boom", "status": "500"})


def test_unknown_method_is_bucketed(client: TestClient, metrics: Metrics) -> None:
    client.request("FROBNICATE", "/fhir/Patient/1")
    samples = [
        s for f in text_string_to_metric_families(metrics.render()[0].decode()) for s in f.samples
    ]
    methods = {s.labels.get("method") for s in samples} - {None}
    assert methods == {"OTHER"}


def test_metrics_response_parses_and_has_app_counters() -> None:
    record_decision("progress")
    record_db_error("timeout")
    body, content_type = metrics_response()
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert "careplan_decisions" in families
    assert "careplan_database_errors" in families
    assert "careplan_http_requests" in families
    assert "careplan_http_request_duration_seconds" in families
    decision = observability.METRICS.registry.get_sample_value(
        "careplan_decisions_total", {"code": "progress"}
    )
    assert decision is not None and decision >= 1


def test_separate_metrics_objects_do_not_collide() -> None:
    a, b = Metrics(), Metrics()
    a.decisions.labels(code="hold").inc()
    assert b.registry.get_sample_value("careplan_decisions_total", {"code": "hold"}) is None


# ---------------------------------------------------------------------------- logging


def test_access_log_line_has_template_not_ids_or_query(
    client: TestClient, log_stream: io.StringIO
) -> None:
    client.get(
        "/fhir/Patient/secret-patient-42?name=Doe&birthdate=1970-01-01",
        headers={"X-Request-ID": "req-1"},
    )
    raw = log_stream.getvalue()
    assert "secret-patient-42" not in raw
    assert "Doe" not in raw and "birthdate" not in raw
    (line,) = _access_lines(log_stream)
    assert line["route"] == "/fhir/Patient/{id}"
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert line["request_id"] == "req-1"
    assert isinstance(line["duration_ms"], float)
    assert {"timestamp", "level", "logger", "message"} <= line.keys()


def test_health_probes_log_at_debug(client: TestClient, log_stream: io.StringIO) -> None:
    client.get("/healthz")
    (line,) = _access_lines(log_stream)
    assert line["level"] == "DEBUG"
    assert line["route"] == "/healthz"


def test_app_logs_carry_request_id_and_extras(log_stream: io.StringIO) -> None:
    logger = logging.getLogger("careplan.test")
    token = observability._request_id.set("rid-7")
    try:
        logger.warning("decided %s", "hold", extra={"decision": "hold"})
    finally:
        observability._request_id.reset(token)
    logger.info("outside")
    inside, outside = _lines(log_stream)
    assert inside["message"] == "decided hold"
    assert inside["request_id"] == "rid-7"
    assert inside["decision"] == "hold"
    assert inside["level"] == "WARNING"
    assert "request_id" not in outside


def test_exception_is_logged_as_one_json_line(log_stream: io.StringIO) -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("careplan.test").exception("failed")
    (line,) = _lines(log_stream)
    assert "ValueError: bad" in str(line["exception"])


def test_configure_logging_is_idempotent(log_stream: io.StringIO) -> None:
    configure_logging("INFO", stream=log_stream)
    configure_logging("info", stream=log_stream)
    ours = [
        h for h in logging.getLogger().handlers if isinstance(h, observability._CareplanHandler)
    ]
    assert len(ours) == 1
    assert logging.getLogger().level == logging.INFO
    logging.getLogger("careplan.test").info("once")
    assert [line["message"] for line in _lines(log_stream)] == ["once"]


def test_configure_logging_rejects_unknown_level() -> None:
    with pytest.raises(ValueError):
        configure_logging("LOUD")


def test_fastapi_router_prefix_is_part_of_the_template(metrics: Metrics) -> None:
    # The service is FastAPI with include_router: the template must carry the prefix.
    from fastapi import APIRouter, FastAPI

    router = APIRouter(prefix="/fhir")

    @router.get("/CarePlan/{plan_id}")
    def read_plan(plan_id: str) -> dict[str, str]:
        return {"id": plan_id}

    app = FastAPI()
    app.include_router(router)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    with TestClient(app) as test_client:
        assert test_client.get("/fhir/CarePlan/cp-9").status_code == 200
    labels = {"method": "GET", "route": "/fhir/CarePlan/{plan_id}", "status": "200"}
    assert metrics.registry.get_sample_value("careplan_http_requests_total", labels) == 1
