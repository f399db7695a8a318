"""A client that goes away mid-request is logged as such, not as a service fault."""

import asyncio
import json
from typing import Any

from starlette.requests import Request

from service.api import errors


def _post_then_disconnect(app: Any, authorization: str) -> list[dict[str, Any]]:
    """Drive the ASGI app directly: headers arrive, then the client is gone."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/fhir/Observation",
        "raw_path": b"/fhir/Observation",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/fhir+json"),
            (b"content-length", b"100"),
            (b"authorization", authorization.encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # raised before: uvicorn logged a stack trace
    return sent


def test_client_disconnect_is_not_an_unhandled_error(client, app, log_stream) -> None:
    sent = _post_then_disconnect(app, client.headers["authorization"])
    assert sent[0]["status"] == 400
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    mine = [line for line in lines if "disconnected" in line["message"]]
    assert [line["level"] for line in mine] == ["INFO"]
    assert not any(line["level"] == "ERROR" for line in lines)


def test_other_errors_are_still_logged_with_their_trace(log_stream) -> None:
    request = Request({"type": "http", "method": "GET", "path": "/elsewhere", "headers": []})
    response = asyncio.run(errors._unexpected(request, RuntimeError("boom")))
    assert response.status_code == 500
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert any(line["message"] == "unhandled error" and line["level"] == "ERROR" for line in lines)
