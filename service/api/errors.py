"""Exception handlers: every error leaves as an OperationOutcome, never {"detail": ...}."""

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.audit import record_error
from service.auth.permissions import InsufficientScope
from service.auth.verify import InvalidToken, KeysUnavailable
from service.fhir.errors import FhirError, Issue, operation_outcome
from service.store import errors as store_errors

logger = logging.getLogger("careplan.errors")

_HTTP_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    503: "transient",
}


def outcome_response(
    status: int, issues: list[Issue], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        content=orjson.dumps(operation_outcome(issues)),
        status_code=status,
        media_type="application/fhir+json; charset=utf-8",
        headers=headers,
    )


# The store's errors as FHIR sees them: status and issue code.
_STORE_ERRORS: dict[type[store_errors.StoreError], tuple[int, str]] = {
    store_errors.NotFound: (404, "not-found"),
    store_errors.Gone: (410, "deleted"),
    store_errors.PreconditionFailed: (412, "conflict"),
    store_errors.Conflict: (409, "conflict"),
    store_errors.Unavailable: (503, "transient"),
    store_errors.TimedOut: (503, "too-costly"),
    store_errors.InvalidQuery: (400, "invalid"),
}


REALM = "flexion-careplan"


def bearer_challenge(error: str, description: str, scope: str | None = None) -> str:
    """A ``WWW-Authenticate`` value (RFC 6750 section 3); descriptions are fixed texts."""
    value = f'Bearer realm="{REALM}", error="{error}", error_description="{description}"'
    return value + (f', scope="{scope}"' if scope else "")


def as_fhir_error(exc: FhirError | store_errors.StoreError | InsufficientScope) -> FhirError:
    """A domain error as the OperationOutcome, status and headers a FHIR client gets."""
    if isinstance(exc, FhirError):
        return exc
    if isinstance(exc, InsufficientScope):
        scope = " ".join(f"system/{need}" for need in exc.needs)
        challenge = bearer_challenge("insufficient_scope", exc.reason, scope)
        return FhirError(403, [Issue("forbidden", exc.reason)], {"WWW-Authenticate": challenge})
    status, code = _STORE_ERRORS.get(type(exc), (500, "exception"))
    if isinstance(exc, store_errors.PreconditionFailed) and exc.ambiguous:
        code = "duplicate"
    # A transient failure: the client may retry after a second.
    headers = {"Retry-After": "1"} if status == 503 else {}
    return FhirError(status, [Issue(code, str(exc))], headers)


async def audited_outcome(
    request: Request, status: int, issues: list[Issue], headers: dict[str, str] | None = None
) -> Response:
    """An error answer, and its AuditEvent (api/audit.py)."""
    await record_error(request, status, "; ".join(issue.diagnostics for issue in issues))
    return outcome_response(status, issues, headers)


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, (FhirError, store_errors.StoreError, InsufficientScope))
    error = as_fhir_error(exc)
    return await audited_outcome(request, error.status, error.issues, error.headers)


async def _invalid_token(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidToken)
    if isinstance(exc, KeysUnavailable):
        # The issuer's fault, not necessarily the token's: the caller may try again.
        issue = Issue("transient", f"The token could not be checked: {exc.reason}")
        return await audited_outcome(request, 503, [issue], {"Retry-After": "60"})
    challenge = bearer_challenge("invalid_token", exc.reason)
    issue = Issue("login", f"No usable bearer token: {exc.reason}")
    return await audited_outcome(request, 401, [issue], {"WWW-Authenticate": challenge})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        text = f"No route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        text = f"{request.method} is not allowed on {request.url.path}"
    else:
        text = str(exc.detail)
    code = _HTTP_CODES.get(exc.status_code, "exception")
    issues = [Issue(code, text)]
    return await audited_outcome(request, exc.status_code, issues, dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = [
        Issue(
            "invalid", str(e.get("msg")), expression=(".".join(str(p) for p in e.get("loc", ())),)
        )
        for e in exc.errors()
    ]
    return await audited_outcome(request, 400, issues or [Issue("invalid", "Invalid request")])


async def _client_disconnect(_request: Request, _exc: Exception) -> Response:
    # The client went away mid-request (a load generator stopping, a closed app): nobody reads
    # this answer, and it is not a fault of the service worth a stack trace. Registered for the
    # class itself, so Starlette's ExceptionMiddleware handles it and does not re-raise it to
    # the server (a handler for Exception is called and then re-raised: uvicorn logs a trace).
    logger.info("client disconnected before the request was read")
    return outcome_response(400, [Issue("incomplete", "The client disconnected")])


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Log the stack trace for operators; the caller gets no internals.
    logger.exception("unhandled error", exc_info=exc)
    return await audited_outcome(request, 500, [Issue("exception", "Internal server error")])


class UnexpectedErrorMiddleware:
    """Answers an unexpected error (a bug) with a 500 OperationOutcome and logs it once.

    Mounted inside ObservabilityMiddleware, so the answer carries X-Request-ID and the log
    line its request_id. Starlette's own handler for ``Exception`` sits outside every user
    middleware (ServerErrorMiddleware) and re-raises after answering, so uvicorn logged the
    trace a second time, without the request id; here the error stops.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            response = await _unexpected(Request(scope), exc)
            if not started:  # else the client already has a status line: nothing to add
                await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(store_errors.StoreError, _fhir_error)
    app.add_exception_handler(InsufficientScope, _fhir_error)
    app.add_exception_handler(InvalidToken, _invalid_token)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected)
