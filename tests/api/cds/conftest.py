"""Fixtures for the CDS Hooks tests: a test EHR and this service configured to read it.

The EHR is a second instance of this service on loopback (uvicorn on a real port, its own
SQLite file), behind a gate that answers 401 to any FHIR request without the EHR's access
token and records what it was asked, so the tests see whether the service read the EHR and
with which token. Helpers for hook requests and the checks every answer gets are in
tests/api/cds/helpers.py.
"""

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from joserfc import jwk, jwt

from service.main import create_app
from service.settings import Settings
from tests.api.cds.helpers import EHR_TOKEN, MRN_SYSTEM
from tests.conftest import FhirClient, authorize
from tests.support.r4_validator import R4Validator

# The EHR whose CDS Hooks JWTs the service trusts in these tests (the services require them
# as the FHIR API requires tokens); tests/api/cds/test_security.py tries the JWT itself.
CDS_ISSUER = "https://ehr.test.example.org"
CDS_KEY = jwk.generate_key("EC", "P-256", parameters={"kid": "cds-test-ehr"})
ROOT = "http://testserver"


def cds_jwt(url: str) -> str:
    """The EHR's JWT for one call to ``url`` (its exact address: the audience)."""
    now = int(time.time())
    claims = {"iss": CDS_ISSUER, "aud": url, "iat": now, "exp": now + 120, "jti": uuid.uuid4().hex}
    header = {"alg": "ES256", "typ": "JWT", "kid": "cds-test-ehr"}
    return jwt.encode(header, claims, CDS_KEY, algorithms=["ES256"])


class CdsTestClient(FhirClient):
    """Signs each call to /cds-services as the EHR would (``sign_calls``), unless the test
    gives its own Authorization header."""

    sign_calls = True

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        path = str(url)
        headers = dict(kwargs.get("headers") or {})
        if (
            self.sign_calls
            and path.startswith("/cds-services")
            and "authorization" not in {k.lower() for k in headers}
        ):
            headers["Authorization"] = f"Bearer {cds_jwt(ROOT + path.split('?')[0])}"
            kwargs["headers"] = headers
        return super().request(method, url, *args, **kwargs)


class TokenGate:
    """ASGI middleware: FHIR requests need ``Bearer EHR_TOKEN``; each is recorded."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, authorization)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/fhir/"):
            headers = dict(scope["headers"])
            authorization = headers.get(b"authorization", b"").decode() or None
            self.requests.append((scope["method"], scope["path"], authorization))
            if authorization != f"Bearer {EHR_TOKEN}":
                body = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error",'
                body += b'"code":"login","diagnostics":"no EHR token"}]}'
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


@dataclass
class Ehr:
    base: str
    gate: TokenGate
    client: httpx.Client = field(repr=False)

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert answer.status_code in (200, 201), answer.text
        return dict(answer.json())

    def fhir_requests(self) -> list[tuple[str, str | None]]:
        """What was read from the EHR (the tests' own writes to it left out): (path, token)."""
        return [(path, token) for method, path, token in self.gate.requests if method == "GET"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ehr]:
    path = tmp_path_factory.mktemp("ehr") / "ehr.db"
    port = _free_port()
    settings = Settings(database_url=f"sqlite:///{path}", db_connect_retries=0, port=port)
    gate = TokenGate(create_app(settings))
    server = uvicorn.Server(
        uvicorn.Config(gate, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test EHR did not start")
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}/fhir"
    headers = {"Authorization": f"Bearer {EHR_TOKEN}", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        yield Ehr(base, gate, client)
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def cds_settings() -> dict[str, Any]:
    """Extra settings of the service under test (a test may change them before `client`)."""
    return {}


@pytest.fixture
def client(app: Any, r4_validator: R4Validator | None) -> Iterator[FhirClient]:
    with CdsTestClient(app) as test_client:
        test_client.validator = r4_validator
        test_client.tokens = authorize(test_client)
        test_client.headers["content-type"] = "application/fhir+json"
        yield test_client


@pytest.fixture
def settings(database_url: str, ehr: Ehr, cds_settings: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "db_connect_retries": 0,
        "cds_fhir_servers": ehr.base,
        "cds_trusted_identifier_systems": MRN_SYSTEM,
        "cds_clients": json.dumps(
            [{"issuer": CDS_ISSUER, "jwks": {"keys": [CDS_KEY.as_dict(private=False)]}}]
        ),
        **cds_settings,
    }
    return Settings(**values)


@pytest.fixture(autouse=True)
def _ehr_requests_of_this_test(ehr: Ehr) -> None:
    ehr.gate.requests.clear()


@pytest.fixture
def tmp_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'other.db'}"
