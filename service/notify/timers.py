"""Time-driven events: a retry window opening, and closing with no retry.

Each retry Task gets two timer rows when it is stored (outbox.record). A worker fires the due
ones: it marks a row fired and writes its event in one transaction, the rows it reads locked
with SKIP LOCKED on PostgreSQL, so each fires exactly once across workers and restarts. A
timer that came due while no worker ran (the service was down, or the window lay in the past
when a late decision stored it) fires at the next pass, a second or so after start-up, with
the time it came due as the event's timestamp.
"""

from datetime import UTC, datetime

import sqlalchemy as sa

from service.fhir.dates import format_instant
from service.notify import outbox, topics
from service.protocol.history import is_evaluation, parse_decision
from service.store.repository import Tx
from service.store.tables import event_timer

BATCH = 100


def _retried(tx: Tx, task: topics.Json) -> bool:
    """Whether a session of the Task's plan was decided inside its window (an $evaluate does
    not count: it re-checks stored data, nobody tried the exercise)."""
    bounds = topics.window(task)
    event = topics.window_event(topics.RETRY_WINDOW_OPENED, "", 0, task, False)
    if bounds is None or event is None or event.care_plan_id is None:
        return False
    opens, closes = bounds
    found = tx.find(
        "GuidanceResponse",
        [
            ("result", f"CarePlan/{event.care_plan_id}"),
            ("date", f"ge{format_instant(opens)}"),
            ("date", f"lt{format_instant(closes)}"),
        ],
        limit=200,
    )
    for body in found:
        if body.get("status") == "entered-in-error":
            continue
        decision = parse_decision(body, UTC)
        if decision is not None and not is_evaluation(decision):
            return True
    return False


def fire_due(tx: Tx, now: datetime, limit: int = BATCH) -> int:
    """Fire the timers due at `now` (naive UTC), earliest first; returns how many fired."""
    rows = tx.conn.execute(
        sa.select(event_timer.c.task_id, event_timer.c.kind, event_timer.c.due)
        .where(event_timer.c.fired.is_(None), event_timer.c.due <= now)
        .order_by(event_timer.c.due, event_timer.c.task_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    fired = 0
    for task_id, kind, due in rows:
        claimed = tx.conn.execute(
            event_timer.update()
            .where(
                event_timer.c.task_id == task_id,
                event_timer.c.kind == kind,
                event_timer.c.fired.is_(None),
            )
            .values(fired=now)
        )
        if not claimed.rowcount:
            continue  # another worker fired it in between (SQLite without row locks)
        fired += 1
        stored = tx.get("Task", task_id)
        body = stored.body if stored is not None and not stored.deleted else None
        retried = kind == topics.RETRY_WINDOW_CLOSED and body is not None and _retried(tx, body)
        version = stored.version if stored is not None else 0
        event = topics.window_event(kind, task_id, version, body, retried)
        if event is not None:
            outbox.add_events(tx, [event], due)
    return fired
