"""/healthz latency while one client sends long requests (issue 18, item 11).

    .venv/bin/python bench/healthz_under_load.py [--duration 10] [--entries 5000]
        [--postgres URL]

A liveness probe that waits behind one client's work gets the pod restarted. This script starts
one uvicorn worker (`service.main:create_app`, as `careplan serve` runs it) on a new SQLite
file, and for each workload lets one client send its requests back to back for `--duration`
seconds while a second client GETs /healthz every 20 ms on its own connection. It prints the
probe's p50, p99 and maximum latency, with the same probe against the idle server first.

Workloads, on 20,000 stored Patients: `transaction` (a transaction Bundle of `--entries`
Patient creates), `batch` (a batch Bundle of 20 searches, each matching every Patient by name
and counting them), `search` (a search by a substring of the name, 500 a page: a full scan of
the index and 500 bodies to decode and serialize). `--postgres` runs them on PostgreSQL too.
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import drop_schema, postgres_schema, server  # noqa: E402

FHIR = {"content-type": "application/fhir+json"}
PROBE_EVERY = 0.02


def patients_bundle(count: int, kind: str = "transaction") -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"family": f"Load{tag}x{k}", "given": ["Bench"]}],
                    "gender": "female",
                },
                "request": {"method": "POST", "url": "Patient"},
            }
            for k in range(count)
        ],
    }


def reads_bundle(count: int) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient?name=Load&_count=20&_offset={k}"}}
            for k in range(count)
        ],
    }


def probe(url: str, stop: threading.Event) -> list[float]:
    """GET /healthz every PROBE_EVERY seconds until `stop`; each answer's latency in ms."""
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get("/healthz").raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(PROBE_EVERY)
    return latencies


def under_load(url: str, duration: float, send: Any) -> dict[str, float]:
    stop = threading.Event()
    sent: list[float] = []

    def load() -> None:
        with httpx.Client(base_url=url, headers=FHIR, timeout=300) as client:
            while not stop.is_set():
                started = time.perf_counter()
                send(client)
                sent.append(time.perf_counter() - started)

    loader = threading.Thread(target=load) if send else None
    if loader:
        loader.start()
        time.sleep(0.2)
    timer = threading.Timer(duration, stop.set)
    timer.start()
    latencies = probe(url, stop)
    if loader:
        loader.join()
    ordered = sorted(latencies)
    return {
        "probes": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max_ms": round(ordered[-1], 2),
        "load_requests": len(sent),
        "load_mean_s": round(statistics.mean(sent), 2) if sent else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--postgres", help="also run on this PostgreSQL URL (a new schema)")
    args = parser.parse_args()
    backends = {"sqlite": f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"}
    if args.postgres:
        backends["postgres"] = postgres_schema(args.postgres)
    transaction = patients_bundle(args.entries)

    def send_transaction(client: httpx.Client) -> None:
        client.post("/fhir", json=transaction).raise_for_status()

    def send_batch(client: httpx.Client) -> None:
        client.post("/fhir", json=reads_bundle(20)).raise_for_status()

    def send_search(client: httpx.Client) -> None:
        client.get("/fhir/Patient", params={"name:contains": "x1", "_count": 500})

    workloads = {"idle": None, "transaction": send_transaction}
    workloads |= {"batch": send_batch, "search": send_search}
    env = {
        "CAREPLAN_LOG_LEVEL": "WARNING",
        "CAREPLAN_LOAD_PROTOCOL": "false",
        "CAREPLAN_MAX_BODY_BYTES": str(64 * 1024 * 1024),
    }
    for backend, database_url in backends.items():
        env["CAREPLAN_DATABASE_URL"] = database_url
        with server("service.main:create_app", env, factory=True) as url:
            with httpx.Client(base_url=url, headers=FHIR, timeout=300) as client:
                for _ in range(4):  # 20,000 Patients for the searches to go through
                    client.post("/fhir", json=patients_bundle(5000)).raise_for_status()
            for name, send in workloads.items():
                print(backend, name, under_load(url, args.duration, send), flush=True)
    if args.postgres:
        drop_schema(args.postgres, backends["postgres"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
