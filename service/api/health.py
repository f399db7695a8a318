"""/healthz (the process is up) and /readyz (the database answers and the schema is at head)."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.errors import outcome_response
from service.api.rest import store_of
from service.fhir.errors import Issue
from service.usecases.health import Readiness, readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="health", summary="Liveness: the process answers")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


# HEAD as probes and uptime checkers send it: GET's status and headers (the server sends no
# body for HEAD). Its own route, so the OpenAPI document keeps one operation per id.
router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)


@router.get(
    "/readyz",
    operation_id="readiness",
    summary="Readiness: database reachable and migrations at head",
    responses={503: {"description": "Not ready (OperationOutcome)"}},
)
async def readyz(request: Request) -> Response:
    state = readiness(store_of(request))
    if state is Readiness.UNREACHABLE:
        return outcome_response(
            503, [Issue("transient", "Database unreachable")], {"Retry-After": "5"}
        )
    if state is Readiness.BEHIND:
        return outcome_response(503, [Issue("transient", "Database migrations are not at head")])
    return Response(b'{"status":"ready"}', media_type="application/json")
