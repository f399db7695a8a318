"""What one client can hold of a `careplan serve` process: an idle connection, a request whose
headers or body trickle in, and requests beyond CAREPLAN_MAX_CONCURRENT_REQUESTS.

Real server processes on loopback, clients on raw sockets (an HTTP client library would not
send half a request). Every socket has a timeout, so a server that never closes fails the test
instead of hanging it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.deploy.processes import Service

pytestmark = pytest.mark.slow

WAIT = 30  # seconds a socket waits for the server before the test fails
PATIENT = orjson.dumps({"resourceType": "Patient", "name": [{"family": "Slow"}]})


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Short timeouts: a second for an idle connection or a request head, and for a body."""
    workdir = tmp_path_factory.mktemp("strict")
    service = Service(
        "strict",
        workdir,
        database_url=f"sqlite:///{workdir / 'careplan.db'}",
        load_protocol=False,
        keep_alive_seconds=1,
        body_timeout_seconds=1,
    )
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Two requests at a time, and bodies allowed to take a minute."""
    workdir = tmp_path_factory.mktemp("narrow")
    service = Service(
        "narrow",
        workdir,
        database_url=f"sqlite:///{workdir / 'careplan.db'}",
        load_protocol=False,
        max_concurrent_requests=2,
        body_timeout_seconds=60,
    )
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


def _connect(service: Service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=WAIT)


def _post_head(length: int) -> bytes:
    return (
        "POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/fhir+json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length body: status, headers, body."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split(" ")[1]), headers, body


def test_an_idle_connection_is_closed(strict: Service) -> None:
    with _connect(strict) as sock:
        assert _read_until_closed(sock) == b""


def test_a_connection_slow_to_send_its_request_head_is_closed(strict: Service) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: unfinished
        assert _read_until_closed(sock) == b""


def test_keep_alive_serves_several_requests_then_closes_when_idle(strict: Service) -> None:
    with _connect(strict) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _read_response(sock)[0] == 200
        assert _read_until_closed(sock) == b""


def test_a_slow_body_is_answered_408_and_cut_off(strict: Service) -> None:
    with _connect(strict) as sock:
        sock.sendall(_post_head(len(PATIENT)) + PATIENT[:10])  # the rest never comes
        answer = _read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    outcome = orjson.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "timeout"
    with httpx.Client(base_url=strict.url, timeout=WAIT) as client:
        assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 0


def test_beyond_the_limit_a_request_gets_503_with_retry_after(narrow: Service) -> None:
    held = [_connect(narrow) for _ in range(2)]
    try:
        for sock in held:  # two requests in progress, waiting for the rest of their bodies
            sock.sendall(_post_head(len(PATIENT)) + PATIENT[:10])
        with httpx.Client(base_url=narrow.url, timeout=WAIT) as client:
            for _ in range(50):  # the held requests reach the app before these, as a rule
                refused = client.get("/fhir/metadata")
                if refused.status_code != 200:
                    break
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["issue"][0]["code"] == "transient"
            assert client.get("/healthz").status_code == 200  # probes are never refused
            for sock in held:
                sock.sendall(PATIENT[10:])
                assert _read_response(sock)[0] == 201
            assert client.get("/fhir/metadata").status_code == 200
    finally:
        for sock in held:
            sock.close()
