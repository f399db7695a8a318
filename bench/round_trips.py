"""Round trips to PostgreSQL per session submission, counted by a TCP proxy.

    .venv/bin/python bench/round_trips.py [--postgres URL]

The proxy (tests/support/round_trips.py) reads the client's protocol messages and counts each
Sync and simple Query: what the client then waits for. That is one round trip, however many
statements went in it (a pipeline sends many). BEGIN and COMMIT count when they travel alone:
21 in the fourth session, 14 until the seventh (with the pool's pre-ping), 13 then, 7 since the
eighth (writes deferred to the next round trip, BEGIN with the first statement and COMMIT with
the last writes, the earlier-answer lookup with the record window). On loopback a round trip
costs ~0.1 ms; across a network it costs the network's latency, so this number is what a
remote database multiplies. tests/store_perf/test_round_trips.py holds the counts.
"""

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.decision_time import enrol, fill, session_at  # noqa: E402
from bench.run import drop_schema, postgres_schema  # noqa: E402
from service.store import migrations  # noqa: E402
from service.store.db import create_db_engine  # noqa: E402
from service.store.runner import Store  # noqa: E402
from service.usecases import sessions  # noqa: E402
from service.usecases.knowledge import load_definitions, shipped_definitions  # noqa: E402
from tests.support.round_trips import RoundTripCounter  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sessions", type=int, default=10, help="stored before counting")
    args = parser.parse_args()
    direct = make_url(args.postgres)
    counter = RoundTripCounter((direct.host or "127.0.0.1", direct.port or 5432))
    counter.start()
    proxied = counter.url(args.postgres)
    url = postgres_schema(proxied)
    engine = create_db_engine(url)
    migrations.upgrade(engine)
    store = Store(engine)
    load_definitions(store, shipped_definitions())
    plan = enrol(store, "p1")
    fill(store, plan, "p1", args.sessions)
    counts = []
    for k in range(args.sessions, args.sessions + 3):
        bundle = session_at(plan, "p1", k)
        with counter.counting() as counted:
            store.run(
                lambda tx, bd=bundle: sessions.submit_session(
                    tx, plan, bd, datetime.now(UTC), caller=None
                )
            )
        counts.append(counted[0])
    print(f"round trips per session submission: {counts}")
    engine.dispose()
    drop_schema(proxied, url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
