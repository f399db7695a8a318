"""Fixtures for the HTTP tests: a live uvicorn server on a free port."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from service.main import create_app
from service.settings import Settings
from tests.conftest import FhirClient, authorize
from tests.support.r4_validator import R4Validator
from tests.support.tokens import ALL_SCOPES, Tokens, external_issuers_setting, external_token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: Any, port: int, **config: Any) -> Iterator[None]:
    """``app`` under uvicorn in a thread on ``port`` until the block ends."""
    options = {"log_level": "warning", **config}
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", **options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class LiveServer:
    """A started service under uvicorn: its FHIR base URL, and tokens got over HTTP."""

    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.url = url

        def post(to: str, form: Any) -> tuple[int, Any]:
            response = httpx.post(to, data=form, timeout=10)
            return response.status_code, response.json()

        self.tokens = Tokens(app.state.authorization, post, url)

    def headers(self, scope: str = ALL_SCOPES) -> dict[str, str]:
        return self.tokens.header(scope)


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """The service under uvicorn in a thread, tokens required (as in production).

    On SQLite it starts on a fresh, empty file (start-up migrates it); on PostgreSQL on the
    emptied test schema.
    """
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'fresh' / 'live.db'}"
    port = free_port()
    settings = Settings(database_url=database_url, db_connect_retries=0, port=port, auth="required")
    app = create_app(settings)
    with serving(app, port):
        yield LiveServer(app, f"http://127.0.0.1:{port}/fhir")


@pytest.fixture
def ehr_app(settings: Settings) -> Any:
    """The service trusting an external issuer (an EHR's authorization server, inline JWKS)
    besides its built-in one: the source of patient-context tokens."""
    trusting = settings.model_copy(
        update={"auth_issuers": external_issuers_setting("http://testserver/fhir")}
    )
    return create_app(trusting)


@pytest.fixture
def ehr_client(ehr_app: Any, r4_validator: R4Validator | None) -> Iterator[FhirClient]:
    """Like ``client`` (a system/*.cruds token by default) on ``ehr_app``."""
    with FhirClient(ehr_app) as test_client:
        test_client.validator = r4_validator
        test_client.tokens = authorize(test_client)
        test_client.headers["content-type"] = "application/fhir+json"
        yield test_client


def as_ehr(scope: str | None, patient: str | None = None, **claims: Any) -> dict[str, str]:
    """Headers carrying a token of the external issuer for ``scope`` (and ``patient``)."""
    token = external_token(scope, "http://testserver/fhir", patient=patient, **claims)
    return {"Authorization": f"Bearer {token}"}
