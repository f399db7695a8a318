"""Reads from the EHR's FHIR server (usecases/cds/ehr.py): only allowed servers, no
redirects, bounded in size, the token sent and never reported."""

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.usecases.cds.ehr import EhrConfigError, EhrReader, EhrUnavailable, parse_fhir_servers


class Ehr:
    """GET /fhir/big: a large FHIR resource; /fhir/moved: a redirect; anything else: a Patient.
    Records the Authorization header of each request."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.authorizations.append(self.headers.get("Authorization"))
                if self.path.startswith("/fhir/moved"):
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.end_headers()
                    return
                resource: dict[str, Any] = {"resourceType": "Patient", "id": "p"}
                if self.path.startswith("/fhir/big"):
                    resource["text"] = {"status": "generated", "div": "x" * 100_000}
                body = json.dumps(resource).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def ehr() -> Iterator[Ehr]:
    server = Ehr()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def read(ehr: Ehr, path: str, max_bytes: int = 50_000, allowed: str | None = None) -> Any:
    async def go() -> Any:
        reader = EhrReader([allowed or ehr.base], timeout=5, max_bytes=max_bytes)
        try:
            answers = await reader.read_all(ehr.base, "secret-token", {"x": (path, {})})
        finally:
            await reader.aclose()
        return answers["x"]

    return asyncio.run(go())


def test_a_read_sends_the_calls_token(ehr: Ehr) -> None:
    assert read(ehr, "Patient/p") == {"resourceType": "Patient", "id": "p"}
    assert ehr.authorizations == ["Bearer secret-token"]


def test_a_large_answer_is_refused(ehr: Ehr) -> None:
    answer = read(ehr, "big")
    assert isinstance(answer, EhrUnavailable) and "too much" in answer.reason


def test_a_redirect_is_not_followed(ehr: Ehr) -> None:
    answer = read(ehr, "moved")
    assert isinstance(answer, EhrUnavailable) and "HTTP 302" in answer.reason
    assert len(ehr.authorizations) == 1  # the token went nowhere else


def test_a_server_not_allowed_is_not_called(ehr: Ehr) -> None:
    answer = read(ehr, "Patient/p", allowed="https://other.example.org/fhir")
    assert isinstance(answer, EhrUnavailable) and "not among the allowed" in answer.reason
    assert ehr.authorizations == []


def test_the_allow_list_is_https_or_loopback() -> None:
    assert parse_fhir_servers(" https://ehr.example.org/fhir/ , http://127.0.0.1:8080/fhir") == (
        "https://ehr.example.org/fhir",
        "http://127.0.0.1:8080/fhir",
    )
    assert parse_fhir_servers("") == ()
    for bad in ("http://ehr.example.org/fhir", "ftp://ehr.example.org", "ehr.example.org"):
        with pytest.raises(EhrConfigError):
            parse_fhir_servers(bad)
