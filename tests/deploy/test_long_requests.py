"""A long request does not hold up the others: /healthz answers while a `careplan serve`
process (SQLite) is busy with a transaction of many entries.

The transaction is made as long as the test wants by holding SQLite's write lock from the test
process: its unit waits for the lock. Run inline on the event loop, that wait (or a long unit
of its own) would leave every other request unanswered; run in a worker thread, the probes are
answered, one after the other, while the transaction is still waiting.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from service.usecases.transaction import INLINE_ENTRIES
from tests.deploy.processes import Service

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(10.0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    database = tmp_path / "careplan.db"
    service = Service("long", tmp_path, database_url=f"sqlite:///{database}", load_protocol=False)
    try:
        service.wait_ready()
        yield service, database
    finally:
        service.stop()


def _send_transaction(port: int, entries: int) -> socket.socket:
    """POST a transaction Bundle on a socket of its own; the request is on its way on return."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": f"Long{k}"}]},
                "request": {"method": "POST", "url": "Patient"},
            }
            for k in range(entries)
        ],
    }
    body = orjson.dumps(bundle)
    head = (
        f"POST /fhir HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head.encode() + body)
    return sock


def _status_of_answer(sock: socket.socket) -> int:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_healthz_answers_while_a_long_transaction_runs(server: tuple[Service, Path]) -> None:
    service, database = server
    lock = sqlite3.connect(database, isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")  # SQLite's one write lock, until the ROLLBACK below
    sock = _send_transaction(service.port, INLINE_ENTRIES + 1)
    try:
        with httpx.Client(base_url=service.url, timeout=TIMEOUT) as client:
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)  # the transaction, waiting for the lock, has not answered yet
        sock.setblocking(True)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    try:
        assert _status_of_answer(sock) == 200
    finally:
        sock.close()
    with httpx.Client(base_url=service.url, timeout=TIMEOUT) as client:
        found = client.get("/fhir/Patient", params={"_summary": "count"}).json()
    assert found["total"] == INLINE_ENTRIES + 1
