"""How long `careplan migrate` takes to reindex: resources compared and rewritten per second.

    .venv/bin/python bench/reindex.py [--sessions 2000] [--postgres URL]

Stores `--sessions` sessions with their decisions for one patient through the real submission
path (about 11 resources each), then times three reindexes: with every row current (the
comparison alone), after the rows of one search parameter were deleted from every
Observation (a release that adds a parameter), and after all index rows were deleted.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.decision_time import enrol, fill  # noqa: E402
from bench.run import drop_schema, postgres_schema  # noqa: E402
from service.store import migrations  # noqa: E402
from service.store.db import create_db_engine  # noqa: E402
from service.store.reindex import reindex  # noqa: E402
from service.store.runner import Store  # noqa: E402
from service.store.tables import INDEX_TABLES  # noqa: E402
from service.usecases.knowledge import load_definitions, shipped_definitions  # noqa: E402


def timed(engine: sa.Engine) -> dict[str, float]:
    started = time.perf_counter()
    report = reindex(engine)
    seconds = time.perf_counter() - started
    return {
        "read": report.scanned,
        "rewritten": report.rewritten,
        "seconds": round(seconds, 2),
        "resources_per_s": round(report.scanned / seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--postgres", help="PostgreSQL URL (a fresh schema is made in it)")
    args = parser.parse_args()
    url = (
        postgres_schema(args.postgres)
        if args.postgres
        else f"sqlite:///{Path(tempfile.mkdtemp()) / 'reindex.db'}"
    )
    engine = create_db_engine(url)
    migrations.upgrade(engine)
    store = Store(engine)
    load_definitions(store, shipped_definitions())
    fill(store, enrol(store, "p1"), "p1", args.sessions)
    dates = INDEX_TABLES["date"]
    result: dict[str, object] = {"database": engine.dialect.name, "sessions": args.sessions}
    result["all_current"] = timed(engine)
    with engine.begin() as connection:
        connection.execute(dates.delete().where(dates.c.param == "date"))
    result["one_parameter_missing"] = timed(engine)
    with engine.begin() as connection:
        for table in INDEX_TABLES.values():
            connection.execute(table.delete())
    result["all_rows_missing"] = timed(engine)
    print(json.dumps(result))
    engine.dispose()
    if args.postgres:
        drop_schema(args.postgres, url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
