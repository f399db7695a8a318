"""Plain Observation create: our service (durable) vs Medplum's FhirRouter (in memory), one run.

    .venv/bin/python bench/observation_create.py [--duration 10] [--postgres URL]

DESIGN §9: plain Observation create, durable, >= 1.0x a peer doing the same work in memory
(Medplum's @medplum/fhir-router + @medplum/core validation, bench/medplum/server.mjs). Each server
is its own process on loopback (one uvicorn worker; one Node process); wrk drives it at 1 and 8
connections with bench/observation.lua (one pain-score Observation per request; any non-201
fails the run). Last comes the durable floor (bench/durable_floor.py: parse, keep the body in
one SQLite row, answer), which shows what keeping a create on disk costs at all. Needs wrk,
node >= 20 and `npm ci` in bench/medplum (run here if it is missing).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    FHIR,
    _ms,
    drop_schema,
    free_port,
    postgres_schema,
    running,
    server,
)

MEDPLUM = ROOT / "bench" / "medplum"
LUA = ROOT / "bench" / "observation.lua"
PATIENT = {
    "resourceType": "Patient",
    "name": [{"family": "Bench", "given": ["Pain"]}],
    "gender": "female",
    "birthDate": "1970-01-01",
}


@contextmanager
def medplum() -> Iterator[str]:
    """The Medplum peer (bench/medplum/server.mjs) on a free port."""
    if not (MEDPLUM / "node_modules").is_dir():
        npm_ci = ["npm", "ci", "--engine-strict=false", "--no-audit"]
        subprocess.run(npm_ci, cwd=MEDPLUM, check=True)
    port = free_port()
    args = ["node", "--experimental-websocket", "server.mjs"]
    url = f"http://127.0.0.1:{port}"
    with running(args, MEDPLUM, {"PORT": str(port)}, url, "/healthz") as ready:
        yield ready


def create_patient(url: str) -> str:
    response = httpx.post(f"{url}/fhir/Patient", json=PATIENT, headers=FHIR, timeout=30)
    response.raise_for_status()
    return response.json()["id"]


def wrk(url: str, connections: int, duration: int, env: dict[str, str]) -> dict[str, float]:
    threads = min(connections, 2)
    run = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", LUA, url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env, "BENCH_THREADS": str(threads)},
    )
    out = run.stdout
    non201 = int(re.search(r"non-201: (\d+)", out).group(1))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(n) for n in socket.groups()) if socket else 0
    if non201 or socket_errors:
        sys.exit(f"{url}: {non201} non-201 responses, {socket_errors} socket errors\n{run.stderr}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        # Anchored: a "+/- Stdev" column such as "78.50%" would match an unanchored "50%".
        "p50_ms": round(_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)), 3),
        "p99_ms": round(_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)), 3),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
    }


def drive(name: str, url: str, duration: int, results: dict[str, Any]) -> None:
    env = {"BENCH_PATIENT": create_patient(url), "BENCH_BASE": "1577836800"}
    for connections in (1, 8):
        key = f"{name}_c{connections}"
        results[key] = wrk(url, connections, duration, env)
        # The second run's effective times start past the first's.
        env["BENCH_BASE"] = str(int(env["BENCH_BASE"]) + 86400 * 365)
        print(key, results[key], flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--postgres", default=os.environ.get("CAREPLAN_TEST_POSTGRES_URL"))
    parser.add_argument("--output", default=str(ROOT / "bench" / "observation_results.json"))
    args = parser.parse_args()
    for tool in ("wrk", "node", "npm"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(),
        "cores": os.cpu_count(),
        "node": node,
        "medplum": json.loads((MEDPLUM / "package.json").read_text())["dependencies"],
    }
    tmp = Path(tempfile.mkdtemp())
    backends = {"sqlite": f"sqlite:///{tmp / 'bench.db'}"}
    if args.postgres:
        backends["postgres"] = postgres_schema(args.postgres)
    try:
        for name, db_url in backends.items():
            env = {"CAREPLAN_DATABASE_URL": db_url, "CAREPLAN_LOG_LEVEL": "WARNING"}
            with server("service.main:create_app", env, factory=True) as url:
                drive(name, url, args.duration, results)
        with medplum() as url:
            drive("medplum", url, args.duration, results)
        # The least a durable server does, for scale (bench/durable_floor.py).
        floor_env = {"FLOOR_DB": str(tmp / "floor.db")}
        with server("bench.durable_floor:app", floor_env, factory=False) as url:
            drive("durable_floor", url, args.duration, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if "postgres" in backends:
            drop_schema(args.postgres, backends["postgres"])
    for name in [*backends, "durable_floor"]:
        for connections in (1, 8):
            ours, peer = results[f"{name}_c{connections}"], results[f"medplum_c{connections}"]
            ours["vs_medplum"] = round(ours["rps"] / peer["rps"], 3)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
