"""Subscriptions: what one active subscription costs a session submission, how fast one worker
delivers, and how long an event takes from commit to the receiver.

    .venv/bin/python bench/subscriptions.py [--pairs 3] [--connections 1 8] [--duration 8]
        [--events 1500] [--postgres URL]

1. CPU per submission, none vs one active subscription, alternated in one window (as
   bench/ab.py: the VM's speed drifts): each run is a fresh `uvicorn service.main:create_app`
   (the delivery worker inside, the default) on a new SQLite file, 40 enrolled patients,
   wrk as bench/run.py drives it. With the subscription (decision-made, no filter, id-only,
   to a receiver in this process) every submission makes one notification. CPU is the server
   process's (all its threads, /proc), from the start of the measured window until the
   receiver has every notification of it: the delivery work is counted.
2. Throughput of one worker: events made with the worker off, then one `careplan worker`
   started; the time from its first to its last notification (maxCount 1, and 20).
3. Commit-to-delivery delay: arrival at the receiver minus the event's timestamp (taken in the
   transaction that wrote it), for every notification of run 1's measured windows (at load),
   and for single changes one at a time (an idle worker in `careplan serve`, woken by the
   commit, and a separate `careplan worker`, which polls every CAREPLAN_DELIVERY_POLL_SECONDS).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ab import cpu_seconds  # noqa: E402
from bench.run import (  # noqa: E402
    BASE,
    FHIR,
    drop_schema,
    enrol_patients,
    free_port,
    postgres_schema,
    running_process,
    session_load,
    wrk,
)
from tests.notify.helpers import subscription  # noqa: E402


class Receiver:
    """A rest-hook endpoint: counts event notifications and when each event arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events = 0
        self.delays: list[float] = []  # seconds from the event's timestamp to its arrival
        self.first: float | None = None
        self.last: float | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                arrived = time.time()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.record(json.loads(body), arrived)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def prefix(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/"

    def record(self, bundle: dict[str, Any], arrived: float) -> None:
        status = bundle["entry"][0]["resource"]["parameter"]
        kind = next(p["valueCode"] for p in status if p["name"] == "type")
        if kind != "event-notification":
            return
        stamps = [
            next(q["valueInstant"] for q in p["part"] if q["name"] == "timestamp")
            for p in status
            if p["name"] == "notification-event"
        ]
        with self.lock:
            self.events += len(stamps)
            self.first = self.first or arrived
            self.last = arrived
            for stamp in stamps:
                occurred = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                self.delays.append(arrived - occurred)

    def wait_for(self, events: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.events >= events:
                    return
            time.sleep(0.02)
        raise SystemExit(f"only {self.events} of {events} events arrived")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def subscribe(url: str, receiver: Receiver, max_count: int = 1) -> str:
    body = subscription(f"{receiver.prefix}careplan", "decision-made", max_count=max_count)
    with httpx.Client(base_url=url, headers=FHIR, timeout=30) as client:
        sub_id = str(client.post("/fhir/Subscription", json=body).raise_for_status().json()["id"])
        for _ in range(600):
            if client.get(f"/fhir/Subscription/{sub_id}").json()["status"] == "active":
                return sub_id
            time.sleep(0.05)
    raise SystemExit("the subscription did not become active")


@contextmanager
def service(db_url: str, receiver: Receiver, **settings: str) -> Iterator[Any]:
    env = {
        "CAREPLAN_DATABASE_URL": db_url,
        "CAREPLAN_LOG_LEVEL": "WARNING",
        "CAREPLAN_SUBSCRIPTION_ENDPOINTS": receiver.prefix,
        **{f"CAREPLAN_{k.upper()}": v for k, v in settings.items()},
    }
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory"]
    args += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    url = f"http://127.0.0.1:{port}"
    with running_process(args, ROOT, env, url, "/readyz") as proc:
        yield url, proc


def _database(postgres: str | None) -> str:
    if postgres:
        return postgres_schema(postgres)
    return f"sqlite:///{Path(tempfile.mkdtemp()) / 'subs.db'}"


def measure(
    subscribed: bool, connections: int, duration: int, postgres: str | None
) -> dict[str, Any]:
    receiver = Receiver()
    db_url = _database(postgres)
    try:
        with service(db_url, receiver) as (url, proc):
            plans, prefix = enrol_patients(url, 40)
            if subscribed:
                subscribe(url, receiver)
            load = session_load(plans, prefix, str(int(BASE.timestamp()) + 86400))
            warm_up = wrk(url, connections, 3, load)
            warm = warm_up["requests"] - warm_up["errors"] if subscribed else 0
            receiver.wait_for(warm)
            load["BENCH_BASE"] = str(int(load["BENCH_BASE"]) + 86400 * 100)
            receiver.delays.clear()
            user, system = cpu_seconds(proc.pid)
            result: dict[str, Any] = dict(wrk(url, connections, duration, load))
            requests = result["requests"]
            if subscribed:  # until every notification of the window has arrived
                started = time.monotonic()
                receiver.wait_for(warm + requests - result["errors"])
                result["drain_s"] = round(time.monotonic() - started, 2)
            user_after, system_after = cpu_seconds(proc.pid)
            result["cpu_ms"] = (user_after - user + system_after - system) * 1000 / requests
            result["delays"] = list(receiver.delays)
    finally:
        receiver.stop()
        if postgres:
            drop_schema(postgres, db_url)
    return result


def throughput(events: int, max_count: int, postgres: str | None) -> dict[str, Any]:
    """Events made with no worker running, then one `careplan worker` delivers them."""
    receiver = Receiver()
    db_url = _database(postgres)
    env = {
        **os.environ,
        "CAREPLAN_DATABASE_URL": db_url,
        "CAREPLAN_LOG_LEVEL": "WARNING",
        "CAREPLAN_SUBSCRIPTION_ENDPOINTS": receiver.prefix,
        "CAREPLAN_MIGRATE_ON_START": "false",
    }
    try:
        with service(db_url, receiver) as (url, _):
            plans, prefix = enrol_patients(url, 40)
            subscribe(url, receiver, max_count)
        with service(db_url, receiver, delivery_worker="false") as (url, _):
            load = session_load(plans, prefix, str(int(BASE.timestamp()) + 86400))
            made = 0
            while made < events:
                result = wrk(url, 8, 5, load)
                made += result["requests"] - result["errors"]
                load["BENCH_BASE"] = str(int(load["BENCH_BASE"]) + 86400 * 400)
        worker = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"], cwd=ROOT, env=env
        )
        try:
            receiver.wait_for(made, timeout=900)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        assert receiver.first is not None and receiver.last is not None
        elapsed = receiver.last - receiver.first
        return {
            "events": receiver.events,
            "seconds": round(elapsed, 2),
            "events_per_s": round(receiver.events / elapsed, 1),
        }
    finally:
        receiver.stop()
        if postgres:
            drop_schema(postgres, db_url)


def one_at_a_time(count: int, postgres: str | None, in_process: bool) -> list[float]:
    """CarePlan changes one at a time, each waiting for its notification: the delay of an
    idle worker, inside the serving process (woken by the commit) or on its own (polling)."""
    receiver = Receiver()
    db_url = _database(postgres)
    worker = None
    settings = {} if in_process else {"delivery_worker": "false"}
    try:
        with service(db_url, receiver, **settings) as (url, _):
            if not in_process:
                env = {
                    **os.environ,
                    "CAREPLAN_DATABASE_URL": db_url,
                    "CAREPLAN_LOG_LEVEL": "WARNING",
                    "CAREPLAN_SUBSCRIPTION_ENDPOINTS": receiver.prefix,
                    "CAREPLAN_MIGRATE_ON_START": "false",
                }
                worker = subprocess.Popen(
                    [sys.executable, "-m", "service.cli", "worker"], cwd=ROOT, env=env
                )
            with httpx.Client(base_url=url, headers=FHIR, timeout=30) as client:
                body = subscription(f"{receiver.prefix}careplan", "careplan-changed")
                sub_id = client.post("/fhir/Subscription", json=body).json()["id"]
                while client.get(f"/fhir/Subscription/{sub_id}").json()["status"] != "active":
                    time.sleep(0.05)
                plan = {
                    "resourceType": "CarePlan",
                    "status": "active",
                    "intent": "plan",
                    "subject": {"reference": "Patient/idle"},
                }
                # A CarePlan is created with POST and updated naming its version (If-Match).
                stored = client.post("/fhir/CarePlan", json=plan).json()
                receiver.wait_for(1)
                for n in range(count):
                    read_at = {"If-Match": f'W/"{stored["meta"]["versionId"]}"'}
                    changed = stored | {"title": str(n)}
                    stored = client.put(
                        f"/fhir/CarePlan/{stored['id']}", json=changed, headers=read_at
                    ).json()
                    receiver.wait_for(n + 2)
                    time.sleep(0.05 + (n % 10) / 20)  # the next change at another poll phase
            return list(receiver.delays)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        receiver.stop()
        if postgres:
            drop_schema(postgres, db_url)


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "n": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--postgres", help="a PostgreSQL URL instead of SQLite (new schemas)")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for connections in args.connections:
        runs: dict[str, list[dict[str, Any]]] = {"none": [], "one": []}
        for pair in range(args.pairs):
            for name in ("none", "one"):
                result = measure(name == "one", connections, args.duration, args.postgres)
                runs[name].append(result)
                shown = {k: v for k, v in result.items() if k != "delays"}
                print(f"c{connections} pair {pair} {name}: {shown}", flush=True)
        none = statistics.median(r["cpu_ms"] for r in runs["none"])
        one = statistics.median(r["cpu_ms"] for r in runs["one"])
        delays = [d for r in runs["one"] for d in r["delays"]]
        report[f"c{connections}"] = {
            "cpu_ms_none": round(none, 3),
            "cpu_ms_one_subscription": round(one, 3),
            "ratio": round(one / none, 3),
            "rps_none": round(statistics.mean(r["rps"] for r in runs["none"]), 1),
            "rps_one": round(statistics.mean(r["rps"] for r in runs["one"]), 1),
            "commit_to_delivery_at_load": quantiles(delays),
        }
        print(f"c{connections}: {report[f'c{connections}']}", flush=True)
    for max_count in (1, 20):
        report[f"worker_throughput_max_count_{max_count}"] = throughput(
            args.events, max_count, args.postgres
        )
        print(max_count, report[f"worker_throughput_max_count_{max_count}"], flush=True)
    for in_process in (True, False):
        key = "commit_to_delivery_idle_" + ("in_serve" if in_process else "careplan_worker")
        report[key] = quantiles(one_at_a_time(40, args.postgres, in_process))
        print(key, report[key], flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
