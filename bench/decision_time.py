"""Decision time for patients with 1, 120 (a full 30-day window) and N (10,000) sessions.

    .venv/bin/python bench/decision_time.py [--sessions 10000] [--postgres URL]

Each patient's history is built through the real submission path (4 sessions a day, so
10,000 sessions span about seven years, and 120 fill the 30-day look-back window). Then a new
session is submitted for each patient many times, each time in a transaction that is rolled
back, so every measurement sees the same state.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import drop_schema, postgres_schema  # noqa: E402
from service.protocol.apply import apply_plan  # noqa: E402
from service.protocol.inputs import PatientRecord  # noqa: E402
from service.store import migrations  # noqa: E402
from service.store.db import create_db_engine  # noqa: E402
from service.store.repository import Tx  # noqa: E402
from service.store.runner import Store  # noqa: E402
from service.usecases import sessions  # noqa: E402
from service.usecases.knowledge import load_definitions, shipped_definitions  # noqa: E402
from tests.protocol import builders as b  # noqa: E402

START = datetime(2019, 1, 1, 8, tzinfo=UTC)


def enrol(store: Store, patient_id: str) -> str:
    def unit(tx: Tx) -> str:
        tx.create({**b.patient(), "id": patient_id}, patient_id)
        for obs in b.eligible_state(START):
            obs = {**obs, "subject": {"reference": f"Patient/{patient_id}"}}
            tx.create(obs, f"{patient_id}-{obs['id']}")
        plan = tx.find("PlanDefinition", [("url", b.PLAN_DEFINITION_URL)], 1)[0]
        record = PatientRecord(patient={**b.patient(), "id": patient_id})
        care_plan = apply_plan(plan, {}, record, START).care_plan
        care_plan.pop("id")
        return tx.create(care_plan).id

    return store.run(unit)


def session_at(plan_id: str, patient_id: str, k: int) -> dict:
    end = START + timedelta(days=1 + k // 4, hours=3 * (k % 4))
    bundle = b.session_bundle([3, 2, 1, 1, 0], end, care_plan_id=plan_id, sid=f"{patient_id}-{k}")
    for entry in bundle["entry"]:
        entry["resource"]["subject"] = {"reference": f"Patient/{patient_id}"}
    return bundle


def analyze(store: Store) -> None:
    """Planner statistics and visibility map, as autovacuum keeps them in production."""
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))


def fill(store: Store, plan_id: str, patient_id: str, count: int) -> None:
    now = datetime.now(UTC)
    for k in range(count):
        bundle = session_at(plan_id, patient_id, k)
        store.run(lambda tx, bd=bundle: sessions.submit_session(tx, plan_id, bd, now, caller=None))
        if k and k % 1000 == 0:
            print(f"  {patient_id}: {k} sessions", flush=True)
        if store.engine.dialect.name == "postgresql" and k in (100, 1000, 5000):
            analyze(store)  # what autovacuum does as tables grow: plans fit the data


def measure_once(store: Store, plan_id: str, bundle: dict, now: datetime) -> float:
    """One decision in a transaction that is rolled back, in ms."""
    with store.engine.connect() as connection, connection.begin() as transaction:
        started = time.perf_counter()
        tx = Tx(connection)
        sessions.submit_session(tx, plan_id, bundle, now, caller=None)
        tx.flush()  # what Store.run sends before COMMIT
        elapsed = (time.perf_counter() - started) * 1000
        transaction.rollback()
    return elapsed


def measure(store: Store, plans: dict[int, str], repeats: int) -> dict[int, list[float]]:
    """Each patient's next session, decided `repeats` times, the patients taking turns: on
    PostgreSQL a rolled-back insert leaves dead index entries behind, and measuring one
    patient after the other would make the later ones pay for the earlier ones' leftovers."""
    now = datetime.now(UTC)
    bundles = {n: session_at(plan, f"p{n}", n) for n, plan in plans.items()}
    times: dict[int, list[float]] = {n: [] for n in plans}
    for _ in range(repeats):
        for n, plan in plans.items():
            times[n].append(measure_once(store, plan, bundles[n], now))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--postgres", help="PostgreSQL URL (a fresh schema is made in it)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "decision_results.json"))
    args = parser.parse_args()
    url = postgres_schema(args.postgres) if args.postgres else None
    url = url or f"sqlite:///{tempfile.mkdtemp()}/decision.db"
    engine = create_db_engine(url)
    migrations.upgrade(engine)
    store = Store(engine)
    load_definitions(store, shipped_definitions())
    counts = [1, 120, args.sessions]
    plans = {n: enrol(store, f"p{n}") for n in counts}
    for n in counts:
        started = time.perf_counter()
        fill(store, plans[n], f"p{n}", n)
        print(f"stored {n} sessions in {time.perf_counter() - started:.0f} s", flush=True)
    if engine.dialect.name == "postgresql":
        analyze(store)
    medians = {n: statistics.median(t) for n, t in measure(store, plans, args.repeats).items()}
    result = {
        "database": engine.dialect.name,
        **{f"median_ms_{n}_sessions": round(m, 2) for n, m in medians.items()},
        f"ratio_{args.sessions}_vs_1": round(medians[args.sessions] / medians[1], 3),
        f"ratio_{args.sessions}_vs_120": round(medians[args.sessions] / medians[120], 3),
    }
    result["date"] = datetime.now(UTC).isoformat(timespec="minutes")
    result["command"] = " ".join(sys.argv)
    print(json.dumps(result))
    output = Path(args.output)
    known = json.loads(output.read_text()) if output.exists() else {}
    if "database" in known:  # the one-database format of earlier runs
        known = {known["database"]: known}
    output.write_text(json.dumps({**known, engine.dialect.name: result}, indent=2) + "\n")
    engine.dispose()
    if args.postgres:
        drop_schema(args.postgres, url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
