"""Session submission with decision vs a bare FastAPI+orjson endpoint, in one run.

    .venv/bin/python bench/run.py [--duration 10] [--plans 50] [--postgres URL]

Starts each server as its own process (one uvicorn worker) on loopback, drives it with wrk
(Debian package `wrk`) at 1 and 8 connections, and prints throughput and p50/p99 latency.
The ratios are what matter: both servers run on the same machine in the same run.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.protocol import builders as b  # noqa: E402

BASE = datetime(2020, 1, 1, tzinfo=UTC)
FHIR = {"content-type": "application/fhir+json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(args: list[str], cwd: Path, env: dict[str, str], url: str, probe: str) -> Iterator[str]:
    """A server process, once GET `probe` answers below 500; stopped on exit."""
    with running_process(args, cwd, env, url, probe):
        yield url


@contextmanager
def running_process(
    args: list[str], cwd: Path, env: dict[str, str], url: str, probe: str
) -> Iterator["subprocess.Popen[bytes]"]:
    """`running`, yielding the process (bench/ab.py reads its CPU time)."""
    proc = subprocess.Popen(args, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if proc.poll() is not None:
                sys.exit(f"{args[0]} exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}{probe}").status_code < 500:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def server(app: str, env: dict[str, str], factory: bool) -> Iterator[str]:
    """One uvicorn worker serving `app` on a free port."""
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", app, "--port", str(port)]
    args += ["--log-level", "warning", "--no-access-log"] + (["--factory"] if factory else [])
    url = f"http://127.0.0.1:{port}"
    with running(args, ROOT, env, url, "/readyz" if factory else "/docs") as ready:
        yield ready


def enrol_patients(url: str, count: int) -> tuple[list[str], str]:
    """Patients benchp<k> with an eligible record at BASE, each enrolled: their CarePlan ids."""
    with httpx.Client(base_url=url, headers=FHIR, timeout=30) as client:
        return enrol(client, count)


def enrol(client: httpx.Client, count: int) -> tuple[list[str], str]:
    """enrol_patients through any httpx client (a TestClient runs the app in-process)."""
    prefix = f"b{uuid.uuid4().hex[:6]}p"
    plans = []
    for k in range(count):
        pid = f"{prefix}{k}"
        client.put(f"/fhir/Patient/{pid}", json={**b.patient(), "id": pid}).raise_for_status()
        for obs in b.eligible_state(BASE):
            obs = {**obs, "id": f"{pid}-{obs['id']}", "subject": {"reference": f"Patient/{pid}"}}
            client.put(f"/fhir/Observation/{obs['id']}", json=obs).raise_for_status()
        applied = client.get(
            f"/fhir/PlanDefinition/flexion-in-lying-protocol/$apply?subject=Patient/{pid}"
        ).json()
        applied.pop("id")
        # The plan began at BASE, so the sessions the load times after it are its own.
        applied["period"] = {"start": BASE.date().isoformat()}
        plans.append(client.post("/fhir/CarePlan", json=applied).json()["id"])
    return plans, prefix


def session_load(plans: list[str], prefix: str, base_epoch: str) -> dict[str, str]:
    """The environment of bench/session.lua: submissions for these enrolled patients."""
    return {
        "BENCH_PLANS": ",".join(plans),
        "BENCH_PATIENT_PREFIX": prefix,
        "BENCH_BASE": base_epoch,
        "BENCH_PATH": "submit",
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(url: str, connections: int, duration: int, env: dict[str, str]) -> dict[str, float]:
    threads = min(connections, 2)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "session.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env, "BENCH_THREADS": str(threads)},
    ).stdout
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def postgres_schema(url: str) -> str:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def drop_schema(admin_url: str, url: str) -> None:
    """Drop the schema postgres_schema made (its name is in the search_path option)."""
    schema = re.search(r"search_path%3D(bench_[0-9a-f]+)", url).group(1)
    engine = sa.create_engine(admin_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def vacuum_analyze(engine: sa.Engine) -> None:
    """What autovacuum keeps up on a production database: planner statistics and the
    visibility map (index-only scans). A schema made seconds ago has neither, and PostgreSQL
    then picks plans no running database would."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--plans", type=int, default=50)
    parser.add_argument("--postgres", default=os.environ.get("CAREPLAN_TEST_POSTGRES_URL"))
    parser.add_argument("--output", default=str(ROOT / "bench" / "results.json"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "cores": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp())
    backends = {"sqlite": f"sqlite:///{tmp / 'bench.db'}"}
    if args.postgres:
        backends["postgres"] = postgres_schema(args.postgres)
    base_epoch = str(int(BASE.timestamp()) + 86400)
    for name, db_url in backends.items():
        env = {"CAREPLAN_DATABASE_URL": db_url, "CAREPLAN_LOG_LEVEL": "WARNING"}
        with server("service.main:create_app", env, factory=True) as url:
            plans, prefix = enrol_patients(url, args.plans)
            if name == "postgres":
                vacuum_analyze(sa.create_engine(db_url))
            load_env = session_load(plans, prefix, base_epoch)
            for connections in (1, 8):
                key = f"{name}_c{connections}"
                results[key] = wrk(url, connections, args.duration, load_env)
                # Later runs start past the hours the earlier ones used.
                load_env["BENCH_BASE"] = str(int(load_env["BENCH_BASE"]) + 86400 * 400)
                print(key, results[key], flush=True)
        load_env["BENCH_PATH"] = "echo"
    with server("bench.bare_app:app", {}, factory=False) as url:
        for connections in (1, 8):
            key = f"bare_c{connections}"
            results[key] = wrk(url, connections, args.duration, load_env)
            print(key, results[key], flush=True)
    for name in backends:
        for connections in (1, 8):
            ratio = (
                results[f"{name}_c{connections}"]["rps"] / results[f"bare_c{connections}"]["rps"]
            )
            results[f"{name}_c{connections}"]["vs_bare"] = round(ratio, 3)
    if "postgres" in backends:
        for connections in (1, 8):
            ratio = (
                results[f"postgres_c{connections}"]["rps"]
                / results[f"sqlite_c{connections}"]["rps"]
            )
            results[f"postgres_c{connections}"]["vs_sqlite"] = round(ratio, 3)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    if "postgres" in backends:
        drop_schema(args.postgres, backends["postgres"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
