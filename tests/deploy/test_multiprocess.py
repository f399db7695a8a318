"""Stateless replicas: several `careplan serve` processes on one PostgreSQL.

A private schema is migrated once with `careplan migrate`; the servers run with
CAREPLAN_MIGRATE_ON_START=false, as the Kubernetes Deployment does. Shown here: both serve the
same data, conditional create stays race-free across processes, a SIGKILL'd process loses no
accepted write, and a SIGTERM'd one finishes its in-flight request before it exits.
Loopback only; every request has a timeout and every process is stopped in ``finally``.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import IN_CI, POSTGRES_URL, _postgres_problem
from tests.deploy.processes import Service, cli_env, run_cli, start_all

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

FHIR = {"content-type": "application/fhir+json"}
TIMEOUT = httpx.Timeout(10.0)


def _patient(system: str, value: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": value}],
        "name": [{"family": "Replica"}],
    }


@pytest.fixture(scope="module")
def schema_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty schema, migrated once by `careplan migrate` (not by the servers)."""
    problem = _postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"CI must run the PostgreSQL tests: {problem}")
        pytest.skip(problem)
    schema = f"mp_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        separator = "&" if "?" in POSTGRES_URL else "?"
        url = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
        workdir = tmp_path_factory.mktemp("migrate")
        migrated = run_cli(["migrate"], cli_env(database_url=url), workdir)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def services(schema_url: str, workdir: Path, *names: str, **settings: object) -> Iterator[Any]:
    """Start the named servers in parallel, wait for /readyz on all, stop them at the end."""
    started: list[Service] = []
    try:
        for name in names:
            started.append(
                Service(name, workdir, database_url=schema_url, migrate_on_start=False, **settings)
            )
        start_all(started)
        yield started
    finally:
        for service in started:
            service.stop()


@pytest.fixture(scope="module")
def pair(schema_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Service]]:
    """Two servers started at the same moment (both load the protocol definitions at
    start-up: that must not race either)."""
    with services(schema_url, tmp_path_factory.mktemp("pair"), "a", "b") as started:
        yield started


def test_both_processes_serve_the_same_data(pair: list[Service]) -> None:
    a, b = pair
    with httpx.Client(timeout=TIMEOUT, headers=FHIR) as http:
        created = http.post(f"{a.url}/fhir/Patient", json=_patient("urn:test:mp", "same-data"))
        assert created.status_code == 201, created.text
        patient_id = created.json()["id"]

        read = http.get(f"{b.url}/fhir/Patient/{patient_id}")
        assert read.status_code == 200
        assert read.headers["etag"] == created.headers["etag"] == 'W/"1"'
        assert read.json() == created.json()

        # An update through B is what A answers next: nothing is cached per process.
        changed = read.json() | {"active": True}
        updated = http.put(
            f"{b.url}/fhir/Patient/{patient_id}", json=changed, headers={"If-Match": 'W/"1"'}
        )
        assert updated.status_code == 200, updated.text
        reread = http.get(f"{a.url}/fhir/Patient/{patient_id}")
        assert reread.headers["etag"] == 'W/"2"'
        assert reread.json()["active"] is True

        # The protocol loaded once although both processes loaded it at start-up (its two
        # versions, 1.0.0 and 1.1.0).
        plans = http.get(f"{b.url}/fhir/PlanDefinition?_summary=count")
        assert plans.status_code == 200
        assert plans.json()["total"] == 2


@pytest.mark.parametrize("round_", range(3))
def test_conditional_create_is_race_free_across_processes(pair: list[Service], round_: int) -> None:
    value = f"cc-{round_}-{uuid.uuid4().hex}"
    criteria = f"identifier=urn:test:mp|{value}"
    parallel = 10
    barrier = threading.Barrier(parallel)

    def create(i: int) -> tuple[int, str]:
        target = pair[i % 2]
        with httpx.Client(timeout=TIMEOUT, headers=FHIR) as http:
            http.get(f"{target.url}/healthz")  # connect before the barrier
            barrier.wait(timeout=10)
            response = http.post(
                f"{target.url}/fhir/Patient",
                json=_patient("urn:test:mp", value),
                headers={"If-None-Exist": criteria},
            )
        assert response.status_code in (200, 201), response.text
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(create, range(parallel)))

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * (parallel - 1) + [201]
    assert len({patient_id for _, patient_id in results}) == 1
    for service in pair:
        found = httpx.get(f"{service.url}/fhir/Patient?{criteria}", timeout=TIMEOUT)
        assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [results[0][1]]


def test_sigkill_mid_load_loses_no_accepted_write(
    pair: list[Service], schema_url: str, tmp_path: Path
) -> None:
    """Writers spread creates over two processes; one is SIGKILLed partway. Every create
    that got its 201 is readable through the survivor, whole and at the version it got."""
    writers, per_writer, kill_after = 4, 30, 20
    system = f"urn:test:kill:{uuid.uuid4().hex}"
    lock = threading.Lock()
    accepted: list[tuple[str, str, str, str]] = []  # (role, id, etag, value)
    failed: dict[str, int] = {"survivor": 0, "victim": 0}
    killed = threading.Event()
    after_kill: list[str] = []

    survivor = pair[0]
    with services(schema_url, tmp_path, "victim") as (victim,):

        def role(target: Service) -> str:
            return "victim" if target is victim else "survivor"

        def write(writer: int) -> None:
            with httpx.Client(timeout=TIMEOUT, headers=FHIR) as http:
                for i in range(per_writer):
                    target = (survivor, victim)[(writer + i) % 2]
                    value = f"w{writer}-{i}"
                    try:
                        response = http.post(
                            f"{target.url}/fhir/Patient", json=_patient(system, value)
                        )
                    except httpx.TransportError:
                        with lock:
                            failed[role(target)] += 1
                        continue
                    if response.status_code == 201:
                        with lock:
                            accepted.append(
                                (role(target), response.json()["id"], response.headers["etag"],
                                 value)
                            )  # fmt: skip
                            if killed.is_set():
                                after_kill.append(role(target))

        with ThreadPoolExecutor(writers) as pool:
            futures = [pool.submit(write, w) for w in range(writers)]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with lock:
                    from_victim = sum(1 for name, *_ in accepted if name == "victim")
                if from_victim >= kill_after // 2:
                    break
                time.sleep(0.01)
            victim.signal(signal.SIGKILL)
            killed.set()
            for future in futures:
                future.result(timeout=120)
        assert victim.process.wait(timeout=10) == -signal.SIGKILL

        assert failed["victim"] > 0, "the kill must land while writes still go to the victim"
        assert failed["survivor"] == 0
        assert "survivor" in after_kill, "the survivor keeps accepting writes"
        assert any(name == "victim" for name, *_ in accepted)

        with httpx.Client(timeout=TIMEOUT, headers=FHIR) as http:
            for _name, patient_id, etag, value in accepted:
                read = http.get(f"{survivor.url}/fhir/Patient/{patient_id}")
                assert read.status_code == 200, (patient_id, read.text)
                assert read.headers["etag"] == etag
                assert read.json()["identifier"][0]["value"] == value
            # Nothing half-written: every stored one is whole (a request the victim was
            # answering when it died may or may not have committed, but never partly).
            everything = http.get(
                f"{survivor.url}/fhir/Patient",
                params={"identifier": f"{system}|", "_count": 500},
            )
        stored = {e["resource"]["id"] for e in everything.json().get("entry", [])}
        assert {patient_id for _, patient_id, _, _ in accepted} <= stored
        assert len(stored) - len(accepted) <= writers


def test_sigterm_finishes_the_in_flight_request(
    pair: list[Service], schema_url: str, tmp_path: Path
) -> None:
    """Graceful shutdown: a request in flight when SIGTERM arrives still gets its 201;
    new connections are refused meanwhile; then the process shuts down cleanly."""
    body = (
        f'{{"resourceType":"Patient","identifier":[{{"system":"urn:test:term",'
        f'"value":"{uuid.uuid4().hex}"}}]}}'
    ).encode()
    head = (
        "POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n"
        # The server answers "100 Continue" once the app reads the body: proof, without
        # guessing a delay, that the request is in flight before SIGTERM is sent.
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    reader = pair[0]
    with services(
        schema_url, tmp_path, "stopping", graceful_shutdown_seconds=15, log_level="INFO"
    ) as (stopping,):
        with socket.create_connection(("127.0.0.1", stopping.port), timeout=10) as sock:
            sock.sendall(head)
            assert _read_head(sock).startswith(b"HTTP/1.1 100 "), "no 100 Continue"
            stopping.signal(signal.SIGTERM)
            # The listener closes at once; the open request keeps its connection.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", stopping.port), timeout=1).close()
                except OSError:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the listener stayed open after SIGTERM")
            assert stopping.process.poll() is None, "exited with a request in flight"
            sock.sendall(body)
            answer = _read_response(sock)
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 201"), answer[:300]
        location = next(
            line.split(b":", 1)[1].strip().decode()
            for line in rest.split(b"\r\n")
            if line.lower().startswith(b"location:")
        )
        # uvicorn re-raises the SIGTERM once its shutdown is complete: exit status -15.
        assert stopping.process.wait(timeout=20) in (0, -signal.SIGTERM)
        output = stopping.output()
        assert "Application shutdown complete." in output, output
        assert "Finished server process" in output
        assert "Traceback" not in output
        patient_id = location.split("/fhir/Patient/", 1)[1].split("/", 1)[0]
        read = httpx.get(f"{reader.url}/fhir/Patient/{patient_id}", timeout=TIMEOUT)
        assert read.status_code == 200


def _read_head(sock: socket.socket) -> bytes:
    """An interim response (status line and headers), read byte by byte so nothing of the
    final response is consumed."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body (the server closes after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
