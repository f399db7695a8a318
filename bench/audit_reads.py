"""What auditing reads costs: CPU per read with no audit (the commit before the audit trail),
with each read's AuditEvent stored before the answer (the service), and with events queued
and stored in batches (bench/audit_batched.py), alternated in one window.

    .venv/bin/python bench/audit_reads.py [--rev 2e68cc6] [--rounds 3] [--connections 1 8]
        [--duration 8] [--postgres URL]

Each run is a fresh uvicorn worker on a new SQLite file (or a new PostgreSQL schema) holding a
Patient and one Observation of theirs; wrk reads that Observation (GET /fhir/Observation/{id})
for 3 s of warm-up, then `--duration` s measured. As bench/ab.py: the server process's CPU
time from /proc, per request, which drifts less than req/s on this VM. After the run the
script counts the stored AuditEvents (the batched server has flushed on shutdown).
"""

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ab import cpu_seconds, worktree  # noqa: E402
from bench.run import _ms, drop_schema, free_port, postgres_schema, running_process  # noqa: E402

FHIR = {"content-type": "application/fhir+json"}
MODES = {
    "none": "service.main:create_app",
    "durable": "service.main:create_app",
    "batched": "bench.audit_batched:create_app",
}


def seed(url: str) -> str:
    with httpx.Client(base_url=url, headers=FHIR, timeout=30) as client:
        patient = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": "2026-01-05T10:00:00Z",
            "valueQuantity": {
                "value": 3,
                "unit": "{score}",
                "system": "http://unitsofmeasure.org",
                "code": "{score}",
            },
        }
        return str(client.post("/fhir/Observation", json=observation).json()["id"])


def wrk(url: str, connections: int, duration: int) -> dict[str, float]:
    threads = min(connections, 2)
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def measure(
    mode: str, code: Path, connections: int, duration: int, postgres: str | None
) -> dict[str, float]:
    database = Path(tempfile.mkdtemp()) / "reads.db"
    db_url = postgres_schema(postgres) if postgres else f"sqlite:///{database}"
    env = {"CAREPLAN_DATABASE_URL": db_url, "CAREPLAN_LOG_LEVEL": "WARNING"}
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", MODES[mode], "--factory", "--port", str(port)]
    args += ["--log-level", "warning", "--no-access-log"]
    url = f"http://127.0.0.1:{port}"
    with running_process(args, code, env, url, "/readyz") as proc:
        read_url = f"{url}/fhir/Observation/{seed(url)}"
        wrk(read_url, connections, 3)
        user, system = cpu_seconds(proc.pid)
        result = wrk(read_url, connections, duration)
        user_after, system_after = cpu_seconds(proc.pid)
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        events = connection.execute(
            sa.text("SELECT count(*) FROM resource WHERE res_type = 'AuditEvent'")
        ).scalar()
    engine.dispose()
    shutil.rmtree(database.parent, ignore_errors=True)
    if postgres:
        drop_schema(postgres, db_url)
    requests = result["rps"] * duration
    result["user_ms"] = (user_after - user) * 1000 / requests
    result["sys_ms"] = (system_after - system) * 1000 / requests
    result["audit_events"] = float(events or 0)
    return result


def summary(runs: list[dict[str, float]]) -> str:
    cpu = statistics.median(r["user_ms"] + r["sys_ms"] for r in runs)
    return (
        f"req/s mean {statistics.mean(r['rps'] for r in runs):.1f}, "
        f"p50 median {statistics.median(r['p50_ms'] for r in runs):.2f} ms, "
        f"p99 median {statistics.median(r['p99_ms'] for r in runs):.2f} ms, "
        f"CPU per read median {cpu:.3f} ms "
        f"(user {statistics.median(r['user_ms'] for r in runs):.3f} "
        f"+ system {statistics.median(r['sys_ms'] for r in runs):.3f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rev", default="2e68cc6", help="a commit without the audit trail")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--postgres", help="a PostgreSQL URL instead of SQLite (new schemas)")
    args = parser.parse_args()
    with worktree(args.rev) as old:
        for connections in args.connections:
            runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
            for round_ in range(args.rounds):
                for mode in MODES:
                    code = old if mode == "none" else ROOT
                    result = measure(mode, code, connections, args.duration, args.postgres)
                    runs[mode].append(result)
                    print(f"c{connections} round {round_} {mode}: {result}", flush=True)
            for mode, results in runs.items():
                print(f"c{connections} {mode}: {summary(results)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
