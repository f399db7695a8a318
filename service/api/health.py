"""/healthz (the process is up) and /readyz (the database answers and the schema is at head)."""

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.errors import outcome_response
from service.fhir.errors import Issue
from service.store.migrations import is_current_enough

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
    store = request.app.state.store
    try:
        # Through Store.run: a pooled connection that died while idle (the pool does not
        # ping, store/db.py) is replaced there, so the probe reports the database.
        store.run(lambda tx: tx.conn.execute(sa.text("SELECT 1")), read_only=True)
        at_head = is_current_enough(store.engine)
    except Exception:  # any driver error means "not ready", never a 500
        return outcome_response(
            503, [Issue("transient", "Database unreachable")], {"Retry-After": "5"}
        )
    if not at_head:
        return outcome_response(503, [Issue("transient", "Database migrations are not at head")])
    return Response(b'{"status":"ready"}', media_type="application/json")
