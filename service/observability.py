"""Signals: request ids, Prometheus metrics and JSON logs.

Self-contained on purpose (no imports from other service modules), so the app factory mounts
it and every layer may call ``record_decision`` / ``record_db_error`` without import cycles.

Mounting (see ``create_app``)::

    configure_logging(settings.log_level)
    app.add_middleware(ObservabilityMiddleware)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = metrics_response()
        return Response(body, media_type=content_type)

Privacy: labels and logs carry the route *template* (``/fhir/Patient/{id}``), never the raw
path, the query string or bodies, so no patient identifier reaches metrics or logs. uvicorn's
own access log prints raw paths with queries: run uvicorn with ``access_log=False`` and
``log_config=None`` so this module's JSON log is the only one.

Several processes: each uvicorn worker is its own process with its own registry, so a scrape
sees only the worker that answered it. The deployment runs one worker per pod/container and
scales with replicas. For ``CAREPLAN_WORKERS > 1`` set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty, writable directory (e.g. under /tmp) *before* the workers start and wipe it at each
start: prometheus_client then writes every process's samples there and ``metrics_response``
aggregates them. Only counters and histograms are used, which aggregate correctly. The
``process_*`` metrics describe one process and are left out of that aggregate.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any, TextIO

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = [
    "DB_ERRORS",
    "DECISIONS",
    "METRICS",
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "Metrics",
    "ObservabilityMiddleware",
    "configure_logging",
    "default_route_template",
    "get_request_id",
    "metrics_response",
    "record_cds_feedback",
    "record_db_error",
    "record_decision",
]

# ASGI types, spelled out to avoid depending on starlette.types here.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.lower().encode("latin-1")
# A client-chosen id is echoed into headers and logs: accept only a short, inert token.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
UNMATCHED_ROUTE = "unmatched"
# Anything else would let a client mint label values at will.
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
# Design targets are p50 <= 2 ms, p99 <= 10-25 ms: resolve the low end finely.
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Probes and scrapes hit every few seconds; their access lines go to DEBUG.
DEFAULT_QUIET_ROUTES: frozenset[str] = frozenset({"/healthz", "/readyz", "/metrics"})

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "careplan_request_id", default=None
)
_access_log = logging.getLogger("careplan.access")


def get_request_id() -> str | None:
    """The current request's id (for OperationOutcome diagnostics, outbound calls)."""
    return _request_id.get()


# ---------------------------------------------------------------------------- metrics


class Metrics:
    """All metrics of one registry. The module-wide ``METRICS`` is the one served at
    ``/metrics``; tests build their own so counts never leak between them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Own registry, not prometheus_client's global one: importing twice or a library
        # registering the same names cannot collide, and nothing unexpected is exported.
        self.registry = registry if registry is not None else CollectorRegistry()
        self.http_requests = Counter(
            "careplan_http_requests",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "careplan_http_request_duration_seconds",
            "Time from request start to the last response byte, by route template.",
            ("method", "route"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "careplan_decisions",
            "Protocol decisions by decision code.",
            ("code",),
            registry=self.registry,
        )
        self.cds_feedback = Counter(
            "careplan_cds_feedback",
            "CDS Hooks card feedback stored, by CDS service id and outcome.",
            ("service", "outcome"),
            registry=self.registry,
        )
        self.db_errors = Counter(
            "careplan_database_errors",
            "Database errors by kind (e.g. connect, timeout, integrity, conflict).",
            ("kind",),
            registry=self.registry,
        )
        # The standard process_* metrics (CPU, memory, open fds, start time) of this process.
        ProcessCollector(registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """Exposition text and its content type."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Imported lazily: the module only makes sense in multi-process mode.
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


METRICS = Metrics()
DECISIONS = METRICS.decisions
DB_ERRORS = METRICS.db_errors


def record_decision(code: str) -> None:
    """Count one protocol decision. ``code`` must come from a fixed code system."""
    DECISIONS.labels(code=code).inc()


def record_cds_feedback(service: str, outcome: str) -> None:
    """Count one stored CDS Hooks feedback entry; both labels come from fixed sets (the
    service ids, accepted | overridden)."""
    METRICS.cds_feedback.labels(service=service, outcome=outcome).inc()


def record_db_error(kind: str) -> None:
    """Count one database error. ``kind`` is a short fixed word, never an error message."""
    DB_ERRORS.labels(kind=kind).inc()


def metrics_response() -> tuple[bytes, str]:
    """Body and content type for the ``/metrics`` route."""
    return METRICS.render()


# ---------------------------------------------------------------------------- logging

# Attributes every LogRecord has; anything else on a record came from ``extra=``. uvicorn
# adds ``color_message``, its message with ANSI colour escapes for a terminal: not for JSON.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        # RFC 3339 UTC with milliseconds; gmtime+strftime is cheaper than datetime.
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "timestamp": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _request_id.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key in record.__dict__.keys() - _RECORD_ATTRS:
            if not key.startswith("_") and key not in entry:
                entry[key] = record.__dict__[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # orjson: one access line per request must cost microseconds, not tens of them.
        # default=str and the json fallback: an odd extra value must never make logging raise.
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # e.g. integers beyond 64 bits, non-str keys
            return json.dumps(entry, default=str, ensure_ascii=False)


class _CareplanHandler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so reconfiguring replaces it."""


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Send all logs as JSON lines to stdout (or ``stream``) at ``level``.

    Idempotent: calling it again replaces the handler it installed earlier instead of adding
    a second one; handlers installed by others (e.g. pytest's) are left alone.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level: {level!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _CareplanHandler):
            root.removeHandler(handler)
    handler = _CareplanHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
    # uvicorn's access logger prints raw paths and query strings (patient ids): silence it
    # in case the server was started with access_log on; our middleware logs instead.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every outbound request's full URL (query included) at INFO.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Let uvicorn's error/lifecycle messages reach the JSON handler instead of its own.
    for name in ("uvicorn", "uvicorn.error"):
        uv_logger = logging.getLogger(name)
        uv_logger.handlers.clear()
        uv_logger.propagate = True


# ---------------------------------------------------------------------------- middleware


def default_route_template(scope: Scope) -> str:
    """The matched route's path template, set by Starlette/FastAPI routing on the scope."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    return UNMATCHED_ROUTE


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _REQUEST_ID_HEADER_BYTES:
            candidate = value.decode("latin-1")
            if _REQUEST_ID_RE.fullmatch(candidate):
                return str(candidate)
            return None
    return None


class ObservabilityMiddleware:
    """Pure ASGI middleware: request id, Prometheus metrics and one JSON access-log line.

    Pure ASGI (not BaseHTTPMiddleware) so streaming responses and contextvars work and the
    overhead stays a few microseconds per request.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        route_template: Callable[[Scope], str] | None = None,
        metrics: Metrics | None = None,
        quiet_routes: Collection[str] = DEFAULT_QUIET_ROUTES,
    ) -> None:
        self.app = app
        self.route_template = route_template or default_route_template
        self.metrics = metrics if metrics is not None else METRICS
        self.quiet_routes = frozenset(quiet_routes)
        # Label children by key: .labels() validates and locks on every call (~5 us each);
        # the key space is bounded by routes x methods x statuses, as the metric already is.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = _request_id.set(request_id)
        header_value = request_id.encode("latin-1")
        start = time.perf_counter()
        status = 500  # if the app raises before starting a response
        finished: float | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k != _REQUEST_ID_HEADER_BYTES
                ]
                headers.append((_REQUEST_ID_HEADER_BYTES, header_value))
                message["headers"] = headers
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Stop the clock at the last byte: background tasks run after it.
                finished = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            end = finished if finished is not None else time.perf_counter()
            self._observe(scope, status, end - start, request_id)
            _request_id.reset(token)

    def _observe(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        method = scope.get("method", "")
        if method not in _KNOWN_METHODS:
            method = "OTHER"
        try:
            route = self.route_template(scope)
        except Exception:  # a broken resolver must not fail the request
            route = UNMATCHED_ROUTE
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self.metrics.http_requests.labels(method, route, str(status))
            self._counters[(method, route, status)] = counter
        counter.inc()
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self.metrics.http_duration.labels(method, route)
            self._histograms[(method, route)] = histogram
        histogram.observe(seconds)

        level = logging.DEBUG if route in self.quiet_routes else logging.INFO
        if _access_log.isEnabledFor(level):
            # Only the template: raw path ids, the query string and bodies stay out of logs.
            # makeRecord + handle skips Logger.log's caller lookup (a stack walk per request).
            record = _access_log.makeRecord(
                _access_log.name,
                level,
                __file__,
                0,
                "request",
                (),
                None,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "request_id": request_id,
                },
            )
            _access_log.handle(record)
