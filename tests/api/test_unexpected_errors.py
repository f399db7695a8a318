"""An unexpected error (a bug) under uvicorn, configured as `careplan serve` runs it: one
500 OperationOutcome that carries the request id, and one JSON log line with the stack trace."""

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.main import create_app
from service.observability import configure_logging
from service.settings import Settings
from tests.api.conftest import free_port, serving


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Filled by configure_logging(stream=...) in the test, after create_app configured its own."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_unexpected_error_answers_with_request_id_and_is_logged_once(
    tmp_path: Path, json_log: io.StringIO
) -> None:
    port = free_port()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'live.db'}", port=port))
    configure_logging("INFO", stream=json_log)

    @app.get("/boom-probe")
    async def boom() -> None:
        raise RuntimeError("secret driver message")

    # As service/cli.py runs it: uvicorn's own loggers go to the service's JSON handler.
    with serving(app, port, log_level="info", log_config=None, access_log=False):
        response = httpx.get(
            f"http://127.0.0.1:{port}/boom-probe", headers={"X-Request-ID": "boom-19"}
        )
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "boom-19"
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "exception"
    assert "secret" not in response.text

    raw = json_log.getvalue()
    lines = [json.loads(line) for line in raw.splitlines()]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0]["request_id"] == "boom-19"
    assert "RuntimeError: secret driver message" in errors[0]["exception"]
    # uvicorn's start-up lines carry a `color_message` copy with ANSI escapes: not in JSON.
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert not any("color_message" in line for line in lines)
    assert "\\u001b" not in raw and "\x1b" not in raw
