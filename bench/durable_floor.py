"""The durable floor: what the bare endpoint costs once it also keeps each request durably.

    .venv/bin/python bench/durable_floor.py [--duration 10]

DESIGN §9 asks a session submission, stored durably on SQLite, for 0.35 of the bare FastAPI
endpoint (`bench/bare_app.py`), and for p50 <= 2 ms at 1 connection. This script measures the
least any durable server does on this machine: the bare endpoint plus one SQLite row holding
the request body, committed with `synchronous=FULL` in WAL mode (the service's settings) before
it answers. Requests that arrive in the same turn of the event loop share one commit (group
commit, as the service's store does), so 8 connections are not held to one fsync each. No
validation, no FHIR resources, no search index, no decision: a floor, not a rival.

Both servers run one after the other on the same session bodies (`bench/session.lua`, path
`echo`), 1 and 8 connections, and the script prints req/s, p50/p99 and the floor's share of
the bare endpoint. Results go to `bench/floor_results.json`. `bench/observation_create.py` runs
it beside Medplum too, on plain Observation creates (POST /fhir/Observation, 201).
"""

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
from fastapi import FastAPI, Request, Response

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_pending: list[tuple[bytes, "asyncio.Future[int]"]] = []
_db: list[sqlite3.Connection] = []  # the one connection, opened at start-up


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    conn = sqlite3.connect(os.environ["FLOOR_DB"], isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS kept (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    _db.append(conn)
    yield
    conn.close()


app = FastAPI(lifespan=_lifespan)


def _commit_pending() -> None:
    """One transaction, one fsync, for every body that arrived since the last commit."""
    batch = _pending[:]
    _pending.clear()
    conn = _db[0]
    conn.execute("BEGIN")
    insert = "INSERT INTO kept (body) VALUES (?)"
    seqs = [conn.execute(insert, (raw,)).lastrowid for raw, _ in batch]
    conn.execute("COMMIT")
    for (_, done), seq in zip(batch, seqs, strict=True):
        done.set_result(seq or 0)


async def _keep(raw: bytes) -> int:
    """The body's row number, once its commit has returned."""
    loop = asyncio.get_running_loop()
    kept: asyncio.Future[int] = loop.create_future()
    _pending.append((raw, kept))
    if len(_pending) == 1:
        loop.call_soon(_commit_pending)
    return await kept


@app.post("/echo")
async def echo(request: Request) -> Response:
    """bench/session.lua's bare endpoint, keeping the body."""
    raw = await request.body()
    body = orjson.loads(raw)
    await _keep(raw)
    return Response(orjson.dumps(body), media_type="application/fhir+json")


@app.post("/fhir/{resource_type}")
async def create(resource_type: str, request: Request) -> Response:
    """bench/observation.lua's create (bench/observation_create.py): 201 with an id."""
    raw = await request.body()
    body = orjson.loads(raw)
    body["id"] = str(await _keep(raw))
    return Response(orjson.dumps(body), status_code=201, media_type="application/fhir+json")


def main() -> int:
    from bench.run import BASE, server, wrk

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--output", default=str(ROOT / "bench" / "floor_results.json"))
    args = parser.parse_args()
    load = {
        "BENCH_PLANS": "x",
        "BENCH_PATIENT_PREFIX": "p",
        "BENCH_BASE": str(int(BASE.timestamp())),
        "BENCH_PATH": "echo",
    }
    results: dict[str, object] = {"date": datetime.now(UTC).isoformat(), "cores": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp())
    servers = {
        "bare": ("bench.bare_app:app", {}),
        "durable_floor": ("bench.durable_floor:app", {"FLOOR_DB": str(tmp / "floor.db")}),
    }
    for name, (target, env) in servers.items():
        with server(target, env, factory=False) as url:
            for connections in (1, 8):
                wrk(url, connections, 2, load)  # warm-up
                results[f"{name}_c{connections}"] = measured = wrk(
                    url, connections, args.duration, load
                )
                print(name, connections, measured, flush=True)
    for connections in (1, 8):
        floor = results[f"durable_floor_c{connections}"]
        bare = results[f"bare_c{connections}"]
        assert isinstance(floor, dict) and isinstance(bare, dict)
        floor["vs_bare"] = round(floor["rps"] / bare["rps"], 3)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
