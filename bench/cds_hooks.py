"""CDS Hooks patient-view with full prefetch beside a plain FHIR read, in one run.

    .venv/bin/python bench/cds_hooks.py [--duration 8] [--pairs 3] [--patients 40]

EHRs give a hook a few hundred milliseconds. One SQLite file, two service processes on it (one
uvicorn worker each, loopback): one requires the EHR's JWT (CAREPLAN_CDS_REQUIRE_JWT=true, a
fresh ES384 JWT per call, so every call also writes its jti), the other runs open; both hold
the same patients, each enrolled and held back by a rising session (the card then shows the
decision, its rules, the retry window and the retry Task). wrk (bench/cds.lua) alternates, in
blocks of `--duration` seconds after 2 s of warm-up: the FHIR read `GET /fhir/Patient/{id}`,
patient-view with the JWT, patient-view open; at 1 and 8 connections. The body of each call
carries the full prefetch (the EHR's Patient, matched here by MRN, its pain scores and
screening Observations). Reported: req/s, p50/p99 latency and the server's CPU per request
(all threads, from /proc), medians over the pairs, and the hook's ratio to the read.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwk, jwt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ab import cpu_seconds  # noqa: E402
from bench.run import _ms, free_port, running_process  # noqa: E402
from tests.api.cds.helpers import full_prefetch, hook_body, owned, patient  # noqa: E402
from tests.protocol import builders as b  # noqa: E402

MRN = "urn:oid:1.2.36.146.595.217.0.1"
EHR = "https://ehr.bench.example"
FHIR = {"content-type": "application/fhir+json"}
RISING = [2, 3, 4, 5, 6]
TOKENS_PER_SECOND = 1500  # more than either server answers; an unused token costs nothing


def seed(url: str, count: int) -> tuple[list[str], list[str]]:
    """Patients here (eligible, enrolled, held back) and the hook bodies naming them as the EHR
    does (their EHR ids, the MRN). (Patient ids here, one hook body per patient.)"""
    ids, bodies = [], []
    clock = datetime.now(UTC)
    with httpx.Client(base_url=url, headers=FHIR, timeout=60) as client:
        for k in range(count):
            pid = f"bench-{k}"
            state = owned(b.eligible_state(clock), pid)
            for resource in [{**patient(pid, f"mrn-{k}")}, *state]:
                path = f"/fhir/{resource['resourceType']}/{resource['id']}"
                client.put(path, json=resource).raise_for_status()
            applied = client.get(
                f"/fhir/PlanDefinition/flexion-in-lying-protocol/$apply?subject=Patient/{pid}"
            ).json()
            applied.pop("id")
            plan = client.post("/fhir/CarePlan", json=applied).json()["id"]
            bundle = b.session_bundle(
                RISING, clock - timedelta(days=1), care_plan_id=plan, sid=f"{pid}-s"
            )
            for entry in bundle["entry"]:
                entry["resource"]["subject"] = {"reference": f"Patient/{pid}"}
            client.post(f"/fhir/CarePlan/{plan}/$submit-session", json=bundle).raise_for_status()
            ehr_id = f"ehr-{k}"
            ehr_state = owned(b.eligible_state(clock), ehr_id)
            body = hook_body(
                "flexion-patient-view",
                ehr_id,
                prefetch=full_prefetch(patient(ehr_id, f"mrn-{k}"), ehr_state),
            )
            ids.append(pid)
            bodies.append(json.dumps(body, separators=(",", ":")))
    return ids, bodies


def tokens(key: Any, url: str, count: int, path: Path) -> None:
    now = int(time.time())
    audience = f"{url}/cds-services/flexion-patient-view"
    header = {"alg": "ES384", "typ": "JWT", "kid": key.kid}
    with path.open("w") as out:
        for _ in range(count):
            claims = {
                "iss": EHR,
                "aud": audience,
                "iat": now,
                "exp": now + 280,
                "jti": uuid.uuid4().hex,
            }
            out.write(jwt.encode(header, claims, key, algorithms=["ES384"]) + "\n")


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
            str(ROOT / "bench" / "cds.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env, "BENCH_THREADS": str(threads)},
    )
    text = out.stdout
    import re

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx or "error" in out.stderr.lower():
        sys.exit(f"the run had failures:\n{text}\n{out.stderr}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50_ms": _ms(re.search(r"^\s*50%\s+(\S+)", text, re.M).group(1)),
        "p99_ms": _ms(re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1)),
    }


def block(
    proc: Any, url: str, connections: int, duration: int, env: dict[str, str], key: Any, tmp: Path
) -> dict[str, float]:
    if env["BENCH_MODE"] == "hook" and key is not None:
        path = tmp / "tokens.txt"
        tokens(key, url, TOKENS_PER_SECOND * (duration + 2), path)
        env = {**env, "BENCH_TOKENS": str(path)}
    wrk(url, connections, 2, env)  # warm-up (its tokens are used up, not reused)
    if "BENCH_TOKENS" in env:
        skip = tmp / "tokens-measured.txt"
        tokens(key, url, TOKENS_PER_SECOND * duration, skip)
        env = {**env, "BENCH_TOKENS": str(skip)}
    user, system = cpu_seconds(proc.pid)
    result = wrk(url, connections, duration, env)
    user_after, system_after = cpu_seconds(proc.pid)
    requests = result["rps"] * duration
    result["cpu_ms"] = (user_after - user + system_after - system) * 1000 / requests
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--patients", type=int, default=40)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp())
    key = jwk.generate_key("EC", "P-384", parameters={"kid": "bench-ehr"})
    clients = json.dumps([{"issuer": EHR, "jwks": {"keys": [key.as_dict(private=False)]}}])
    common = {
        "CAREPLAN_DATABASE_URL": f"sqlite:///{tmp / 'cds.db'}",
        "CAREPLAN_LOG_LEVEL": "WARNING",
        "CAREPLAN_CDS_TRUSTED_IDENTIFIER_SYSTEMS": MRN,
        "CAREPLAN_CDS_CLIENTS": clients,
    }
    servers = {}
    with ExitStack() as stack:
        for name, require in (("jwt", "true"), ("open", "false")):
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "service.main:create_app",
                "--factory",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
            env = {**common, "CAREPLAN_CDS_REQUIRE_JWT": require}
            url = f"http://127.0.0.1:{port}"
            proc = stack.enter_context(running_process(command, ROOT, env, url, "/readyz"))
            servers[name] = (proc, url)
        ids, bodies = seed(servers["jwt"][1], args.patients)
        (tmp / "bodies.txt").write_text("\n".join(bodies) + "\n")
        load = {"BENCH_IDS": ",".join(ids), "BENCH_BODIES": str(tmp / "bodies.txt")}
        workloads = {
            "fhir_read": ("jwt", {**load, "BENCH_MODE": "read"}, None),
            "patient_view_jwt": ("jwt", {**load, "BENCH_MODE": "hook"}, key),
            "patient_view_open": ("open", {**load, "BENCH_MODE": "hook"}, None),
        }
        results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "cores": os.cpu_count()}
        for connections in (1, 8):
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in workloads}
            for pair in range(args.pairs):
                for name, (server, env, signing) in workloads.items():
                    proc, url = servers[server]
                    result = block(proc, url, connections, args.duration, env, signing, tmp)
                    runs[name].append(result)
                    print(f"c{connections} pair {pair} {name}: {result}", flush=True)
            for name, found in runs.items():
                results[f"{name}_c{connections}"] = {
                    metric: round(statistics.median(r[metric] for r in found), 3)
                    for metric in ("rps", "p50_ms", "p99_ms", "cpu_ms")
                }
            read = results[f"fhir_read_c{connections}"]
            for name in ("patient_view_jwt", "patient_view_open"):
                entry = results[f"{name}_c{connections}"]
                entry["p50_vs_read"] = round(entry["p50_ms"] / read["p50_ms"], 2)
                entry["cpu_vs_read"] = round(entry["cpu_ms"] / read["cpu_ms"], 2)
    output = ROOT / "bench" / "cds_results.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
