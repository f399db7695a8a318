"""What tokens cost: CPU per read, create and session submission with CAREPLAN_AUTH=required
(a real token from the built-in server on every request) against CAREPLAN_AUTH=off, the same
checkout, alternated in one window.

    .venv/bin/python bench/auth_ab.py [--pairs 4] [--connections 1] [--duration 8]
        [--workloads read create submit] [--postgres URL]

As bench/ab.py: each run is a fresh uvicorn worker on a new SQLite file (or PostgreSQL schema),
off, required, off, required... 3 s of wrk warm-up, then `--duration` s measured, and the
server process's user + system CPU time from /proc per request (it drifts less than req/s on
this VM). `required` registers a client with `careplan clients add` before the server starts,
gets its token at the token endpoint (a client assertion signed with the client's key) and
sends it with every request; every request must succeed (any other status fails the run).
"""

import argparse
import json
import os
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

from bench.ab import cpu_seconds  # noqa: E402
from bench.run import (  # noqa: E402
    BASE,
    FHIR,
    _ms,
    drop_schema,
    enrol,
    free_port,
    postgres_schema,
    running_process,
    session_load,
    vacuum_analyze,
)
from bench.run import wrk as wrk_sessions  # noqa: E402
from tests.support.tokens import client_assertion, client_key  # noqa: E402

CLIENT = "bench-client"
READ_TARGETS = 200


def _cli(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


def _token(url: str) -> str:
    token_url = f"{url}/fhir/auth/token"
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion(CLIENT, token_url),
        "scope": "system/*.cruds",
    }
    response = httpx.post(token_url, data=form, timeout=30)
    response.raise_for_status()
    return str(response.json()["access_token"])


def _wrk(script: str, url: str, connections: int, duration: int, env: dict[str, str]) -> dict:
    threads = min(connections, 2)
    run = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s",
         str(ROOT / "bench" / script), url],
        capture_output=True, text=True, check=True,
        env={**os.environ, **env, "BENCH_THREADS": str(threads)},
    )  # fmt: skip
    out = run.stdout
    failed = int(re.search(r"non-20[01]: (\d+)", out).group(1))
    if failed:
        sys.exit(f"{failed} failed requests\n{run.stderr}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
    }


def measure(
    mode: str, workload: str, connections: int, duration: int, postgres: str | None
) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp())
    db_url = postgres_schema(postgres) if postgres else f"sqlite:///{folder / 'auth.db'}"
    env = {
        "CAREPLAN_DATABASE_URL": db_url,
        "CAREPLAN_LOG_LEVEL": "WARNING",
        "CAREPLAN_AUTH": mode,
        "CAREPLAN_HOST": "127.0.0.1",
    }
    if mode == "required":
        _cli(["migrate"], env)
        jwks = folder / "jwks.json"
        jwks.write_text(json.dumps({"keys": [client_key().as_dict(private=False)]}))
        _cli(["clients", "add", "--client-id", CLIENT, "--jwks-file", str(jwks),
              "--scope", "system/*.cruds"], env)  # fmt: skip
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory"]
    args += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    url = f"http://127.0.0.1:{port}"
    with running_process(args, ROOT, env, url, "/readyz") as proc:
        headers = dict(FHIR)
        load: dict[str, str] = {}
        if mode == "required":
            headers["authorization"] = load["BENCH_AUTHORIZATION"] = f"Bearer {_token(url)}"
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            if workload == "submit":
                plans, prefix = enrol(client, 40)
                load |= session_load(plans, prefix, str(int(BASE.timestamp()) + 86400))
            else:
                patient = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()
                load |= {"BENCH_PATIENT": patient["id"], "BENCH_BASE": str(int(BASE.timestamp()))}
            if workload == "read":
                paths = []
                for k in range(READ_TARGETS):
                    body = {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
                        "subject": {"reference": f"Patient/{load['BENCH_PATIENT']}"},
                        "valueQuantity": {"value": k % 11, "unit": "{score}"},
                    }
                    created = client.post("/fhir/Observation", json=body)
                    created.raise_for_status()
                    paths.append(f"/fhir/Observation/{created.json()['id']}")
                load["BENCH_PATHS"] = ",".join(paths)
        if postgres:
            vacuum_analyze(sa.create_engine(db_url))

        def run(seconds: int) -> dict:
            if workload == "submit":
                result = wrk_sessions(url, connections, seconds, load)
                if result["errors"]:
                    sys.exit(f"{result['errors']} failed submissions")
                return result
            script = "read.lua" if workload == "read" else "observation.lua"
            return _wrk(script, url, connections, seconds, load)

        run(3)
        load["BENCH_BASE"] = str(int(load["BENCH_BASE"]) + 86400 * 100)
        user, system = cpu_seconds(proc.pid)
        result = run(duration)
        user_after, system_after = cpu_seconds(proc.pid)
    shutil.rmtree(folder, ignore_errors=True)
    if postgres:
        drop_schema(postgres, db_url)
    requests = result["rps"] * duration
    result["cpu_ms"] = (user_after - user + system_after - system) * 1000 / requests
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--connections", type=int, nargs="+", default=[1])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument(
        "--workloads", nargs="+", choices=["read", "create", "submit"],
        default=["read", "create", "submit"],
    )  # fmt: skip
    parser.add_argument("--postgres", help="a PostgreSQL URL instead of SQLite (new schemas)")
    args = parser.parse_args()
    for workload in args.workloads:
        for connections in args.connections:
            runs: dict[str, list[dict[str, float]]] = {"off": [], "required": []}
            for pair in range(args.pairs):
                for mode in ("off", "required"):
                    result = measure(mode, workload, connections, args.duration, args.postgres)
                    runs[mode].append(result)
                    print(f"{workload} c{connections} pair {pair} {mode}: {result}", flush=True)
            cpu = {mode: statistics.median(r["cpu_ms"] for r in rs) for mode, rs in runs.items()}
            rps = {mode: statistics.mean(r["rps"] for r in rs) for mode, rs in runs.items()}
            print(
                f"{workload} c{connections}: CPU/request median off {cpu['off']:.3f} ms, "
                f"required {cpu['required']:.3f} ms, ratio {cpu['required'] / cpu['off']:.3f}; "
                f"req/s mean off {rps['off']:.1f}, required {rps['required']:.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
