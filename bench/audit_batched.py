"""The alternative to durable read audits that bench/audit_reads.py measures: a read's
AuditEvent is queued in the process and stored with others in one unit every INTERVAL seconds
or MAX_EVENTS events, whichever comes first (environment BENCH_AUDIT_INTERVAL and
BENCH_AUDIT_MAX_EVENTS; 0.05 s and 256 by default); a full queue (BOUND events) makes the next
read wait for a flush; shutdown flushes what is left.

Not the service's code (service/usecases/audit_trail.py stores a read's event before the
answer, see bench/README.md "Audit of reads"): an app factory for uvicorn that swaps the read
path in, `uvicorn --factory bench.audit_batched:create_app`.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI

from service import main
from service.fhir.ids import new_resource_id
from service.store.repository import Tx
from service.store.runner import Store
from service.usecases import audit_trail, crud, enrolment
from service.usecases.audit_trail import Audit, Touched, event_of

T = TypeVar("T")
# The flush interval and batch size (bench/audit_reads.py --interval varies the first).
INTERVAL = float(os.environ.get("BENCH_AUDIT_INTERVAL", "0.05"))  # seconds
MAX_EVENTS = int(os.environ.get("BENCH_AUDIT_MAX_EVENTS", "256"))
BOUND = 10_000


class Batcher:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: list[dict[str, Any]] = []
        self.timer: asyncio.Task[None] | None = None
        self.flushed = asyncio.Event()

    async def add(self, event: dict[str, Any]) -> None:
        while len(self.pending) >= BOUND:  # bounded memory: wait for the flush under way
            self.flushed.clear()
            await self.flushed.wait()
        self.pending.append(event)
        if len(self.pending) >= MAX_EVENTS:
            await self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(INTERVAL)
        self.timer = None
        await self.flush()

    async def flush(self) -> None:
        events, self.pending = self.pending, []
        if events:
            rows = [(event, new_resource_id()) for event in events]
            await self.store.arun(lambda tx: tx.create_many(rows))
        self.flushed.set()


_batchers: dict[int, Batcher] = {}


async def batched_read(
    store: Store, audit: Audit | None, unit: Callable[[Tx], T], touched: Callable[[T], Touched]
) -> T:
    result = await store.arun(unit, read_only=True)
    if audit is not None:
        batcher = _batchers.setdefault(id(store), Batcher(store))
        await batcher.add(event_of(audit, touched(result)))
    return result


def create_app() -> FastAPI:
    app = main.create_app()
    audit_trail.read = batched_read  # type: ignore[assignment]
    crud.audited_read = batched_read  # type: ignore[assignment]
    enrolment.audited_read = batched_read  # type: ignore[assignment]
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with inner(application) as state:
            try:
                yield state
            finally:
                for batcher in _batchers.values():
                    await batcher.flush()

    app.router.lifespan_context = lifespan
    return app
