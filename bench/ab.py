"""Session submission, an older commit against this checkout, alternated in one window.

    .venv/bin/python bench/ab.py --rev e5d3568 [--pairs 4] [--connections 1 8] [--duration 8]
        [--workload session|observation] [--postgres URL]

This VM's speed drifts by 15-25% within an hour, so two single runs of bench/run.py minutes
apart cannot show a 5-10% change. This script checks out `--rev` in a `git worktree`, then
runs old, new, old, new... each as a fresh uvicorn worker on a new SQLite file: 40 enrolled
patients, 3 s of wrk warm-up, `--duration` s measured. Besides req/s and p50/p99 it reads the
server process's CPU time from /proc (user and system milliseconds per request, every thread
of the process), which drifts less than req/s. `--workload observation` alternates plain
Observation creates (bench/observation.lua, as bench/observation_create.py) instead of
session submissions.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import observation_create  # noqa: E402
from bench.run import (  # noqa: E402
    BASE,
    drop_schema,
    enrol_patients,
    free_port,
    postgres_schema,
    running_process,
    session_load,
    vacuum_analyze,
    wrk,
)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp()) / "old"
    subprocess.run(
        ["git", "worktree", "add", "-q", "--detach", str(path), rev], cwd=ROOT, check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=True)


def measure(
    code: Path, connections: int, duration: int, workload: str, postgres: str | None
) -> dict[str, float]:
    """One fresh server running the code in `code`, on a new SQLite file (or a new schema in
    the PostgreSQL database `postgres`)."""
    database = Path(tempfile.mkdtemp()) / "ab.db"
    db_url = postgres_schema(postgres) if postgres else f"sqlite:///{database}"
    env = {"CAREPLAN_DATABASE_URL": db_url, "CAREPLAN_LOG_LEVEL": "WARNING"}
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory"]
    args += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    url = f"http://127.0.0.1:{port}"
    with running_process(args, code, env, url, "/readyz") as proc:
        if workload == "session":
            plans, prefix = enrol_patients(url, 40)
            if postgres:
                vacuum_analyze(sa.create_engine(db_url))  # as bench/run.py does
            load = session_load(plans, prefix, str(int(BASE.timestamp()) + 86400))
            run = wrk
        else:
            patient = observation_create.create_patient(url)
            load = {"BENCH_PATIENT": patient, "BENCH_BASE": str(int(BASE.timestamp()))}
            run = observation_create.wrk
        run(url, connections, 3, load)
        # The measured requests' clocks start past the warm-up's.
        load["BENCH_BASE"] = str(int(load["BENCH_BASE"]) + 86400 * 100)
        user, system = cpu_seconds(proc.pid)
        result = run(url, connections, duration, load)
        user_after, system_after = cpu_seconds(proc.pid)
    shutil.rmtree(database.parent, ignore_errors=True)
    if postgres:
        drop_schema(postgres, db_url)
    requests = result["rps"] * duration
    result["user_ms"] = (user_after - user) * 1000 / requests
    result["sys_ms"] = (system_after - system) * 1000 / requests
    return result


def summary(runs: list[dict[str, float]]) -> str:
    return (
        f"req/s mean {statistics.mean(r['rps'] for r in runs):.1f}, "
        f"p50 median {statistics.median(r['p50_ms'] for r in runs):.2f} ms, "
        f"p99 median {statistics.median(r['p99_ms'] for r in runs):.2f} ms, "
        f"CPU per request user {statistics.median(r['user_ms'] for r in runs):.2f} "
        f"+ system {statistics.median(r['sys_ms'] for r in runs):.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rev", required=True, help="the older commit")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--workload", choices=["session", "observation"], default="session")
    parser.add_argument("--postgres", help="a PostgreSQL URL instead of SQLite (new schemas)")
    args = parser.parse_args()
    with worktree(args.rev) as old:
        for connections in args.connections:
            runs: dict[str, list[dict[str, float]]] = {args.rev: [], "checkout": []}
            for pair in range(args.pairs):
                for name, code in ((args.rev, old), ("checkout", ROOT)):
                    result = measure(code, connections, args.duration, args.workload, args.postgres)
                    runs[name].append(result)
                    print(f"c{connections} pair {pair} {name}: {result}", flush=True)
            for name, results in runs.items():
                print(f"c{connections} {name}: {summary(results)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
