"""A client that goes away mid-request is logged as such, not as a service fault."""

import asyncio
import json

from starlette.requests import ClientDisconnect

from service.api import errors


def test_client_disconnect_is_not_an_unhandled_error(log_stream) -> None:
    response = asyncio.run(errors._unexpected(None, ClientDisconnect()))  # type: ignore[arg-type]
    assert response.status_code == 400
    assert json.loads(response.body)["issue"][0]["code"] == "incomplete"
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    mine = [line for line in lines if "disconnected" in line["message"]]
    assert [line["level"] for line in mine] == ["INFO"]
    assert not any(line["message"] == "unhandled error" for line in lines)
    assert not any("Traceback" in json.dumps(line) for line in lines)


def test_other_errors_are_still_logged_with_their_trace(log_stream) -> None:
    response = asyncio.run(errors._unexpected(None, RuntimeError("boom")))  # type: ignore[arg-type]
    assert response.status_code == 500
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert any(line["message"] == "unhandled error" and line["level"] == "ERROR" for line in lines)
