"""How many SQLite pages one session submission writes to the WAL, by B-tree.

    .venv/bin/python bench/wal_pages.py [--patients 10] [--warmup 300] [--samples 20]

A durable commit writes every page the transaction changed to the WAL and fsyncs it, so the
page count is the commit's cost. The script enrols patients in-process (a fresh SQLite file),
submits `--warmup` sessions round-robin, then for each sampled submission truncates the WAL,
submits one session, reads the WAL frame headers back and names each page's table or index
with SQLite's `dbstat` view. "(new page)" is a page the database did not have before the
submission: a B-tree split or growth.
"""

import argparse
import collections
import json
import os
import sqlite3
import struct
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.protocol import builders as b  # noqa: E402

FHIR = {"content-type": "application/fhir+json"}


def wal_pages(wal: Path) -> set[int]:
    """Page numbers of the frames in a WAL file (32-byte header, 24-byte frame headers)."""
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    pages, offset = set(), 32
    while offset + 24 <= len(data):
        pages.add(struct.unpack(">I", data[offset : offset + 4])[0])
        offset += 24 + page_size
    return pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    db = Path(tempfile.mkdtemp()) / "wal.db"
    os.environ["CAREPLAN_DATABASE_URL"] = f"sqlite:///{db}"
    os.environ["CAREPLAN_LOG_LEVEL"] = "WARNING"
    from fastapi.testclient import TestClient

    from bench.run import BASE, enrol
    from service.main import create_app

    with TestClient(create_app(), headers=FHIR) as client:
        plans, prefix = enrol(client, args.patients)

        def submit(g: int) -> None:
            plan, pid = plans[g % len(plans)], f"{prefix}{g % len(plans)}"
            end = BASE + timedelta(days=1, hours=6 * (g // len(plans)))
            bundle = b.session_bundle([3, 2, 1, 1, 0], end, care_plan_id=plan, sid=f"w{g}")
            body = json.dumps(bundle).replace(f"Patient/{b.PATIENT_ID}", f"Patient/{pid}")
            response = client.post(f"/fhir/CarePlan/{plan}/$submit-session", content=body)
            response.raise_for_status()

        for g in range(args.warmup):
            submit(g)
        side = sqlite3.connect(db)
        names = dict((page, name) for name, page in side.execute("SELECT name, pageno FROM dbstat"))
        per_tree: collections.Counter[str] = collections.Counter()
        counts = []
        for g in range(args.warmup, args.warmup + args.samples):
            side.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            submit(g)
            pages = wal_pages(Path(f"{db}-wal"))
            counts.append(len(pages))
            per_tree.update(names.get(p, "(new page)") for p in pages)
    counts.sort()
    print(
        f"pages per submission: mean {sum(counts) / len(counts):.1f}, "
        f"median {counts[len(counts) // 2]}, min {counts[0]}, max {counts[-1]}"
    )
    for name, total in per_tree.most_common():
        print(f"  {total / len(counts):6.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
