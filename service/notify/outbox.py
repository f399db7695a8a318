"""The outbox: topic events written in the transaction of the change that caused them, so a
committed change always has its event and a rolled-back one never has; and the dispatcher,
which numbers each event for the subscriptions it matches.

``record`` is called by the use cases that write (crud, sessions) with what they stored. It
costs no round trip of its own on PostgreSQL: its INSERT rides with the transaction's other
deferred writes (store/engine/prepared.py). Whether anyone subscribes is not its business:
the dispatcher fans events out later and deletes those no subscription matched.
"""

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from service.fhir.dates import utc_now
from service.notify import state, topics
from service.notify.topics import Event, Timer
from service.store.repository import Stored, Tx
from service.store.tables import event_timer, outbox_event, subscription_event, subscription_state

Json = dict[str, Any]

# Set once a unit that wrote an event has committed: wakes this process's delivery worker at
# once instead of at its next poll.
committed = threading.Event()

INSERT_EVENT = outbox_event.insert()
DISPATCH_BATCH = 500
LIVE = ("requested", "active", "error")  # statuses whose subscriptions count new events


@dataclass(frozen=True)
class Change:
    """One stored write: `previous` is the deleted body for a deletion."""

    stored: Stored
    previous: Json | None = None
    created: bool = False


def event_row(event: Event, occurred: datetime) -> dict[str, Any]:
    return {
        "topic": event.topic,
        "focus_type": event.focus_type,
        "focus_id": event.focus_id,
        "focus_version": event.focus_version,
        "focus_deleted": event.deleted,
        "patient_id": event.patient_id,
        "care_plan_id": event.care_plan_id,
        "decision": event.decision,
        "occurred": occurred,
        "dispatched": False,
    }


def add_events(tx: Tx, events: Sequence[Event], occurred: datetime) -> None:
    if not events:
        return
    with tx.db.pipelined():
        tx.db.many(INSERT_EVENT, [event_row(e, occurred) for e in events])
    tx.after_commit.append(committed.set)


def record(tx: Tx, changes: Iterable[Change]) -> None:
    """The events and timers of what this transaction stored."""
    events: list[Event] = []
    timers: list[Timer] = []
    for change in changes:
        s = change.stored
        events += topics.events_for(
            s.type, s.id, s.version, s.body, change.previous, change.created
        )
        if s.type == "Task" and s.body is not None:
            timers += topics.timers_for(s.id, s.body)
    add_events(tx, events, utc_now().replace(tzinfo=None))
    schedule(tx, timers)


def _upsert_timer(dialect: Any) -> Any:
    insert = dialect.insert(event_timer)
    return insert.on_conflict_do_update(
        index_elements=[event_timer.c.task_id, event_timer.c.kind],
        set_={"due": insert.excluded.due},
        where=event_timer.c.fired.is_(None),
    )


# Built once: the prepared-statement cache knows statements by identity.
_UPSERT_TIMER = {"sqlite": _upsert_timer(sqlite), "postgresql": _upsert_timer(postgresql)}


def schedule(tx: Tx, timers: Sequence[Timer]) -> None:
    """Timers of a Task, new or moved; one that has fired stays fired (once means once)."""
    if not timers:
        return
    stmt = _UPSERT_TIMER["sqlite" if tx.sqlite else "postgresql"]
    rows = [{"task_id": t.task_id, "kind": t.kind, "due": t.due, "fired": None} for t in timers]
    with tx.db.pipelined():
        for row in rows:
            tx.db.write(stmt, row)


# --- the dispatcher ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    sub_id: str
    topic: str
    criteria: topics.Criteria
    counted: int  # events_since_start before this batch
    start_after: int  # events up to this id happened before it existed


def _targets(tx: Tx) -> list[_Target]:
    rows = tx.conn.execute(
        sa.select(
            subscription_state.c.sub_id,
            subscription_state.c.topic,
            subscription_state.c.filters,
            subscription_state.c.events_since_start,
            subscription_state.c.start_after,
        ).where(subscription_state.c.status.in_(LIVE))
    ).all()
    found = []
    for sub_id, name, filters, counted, start_after in rows:
        topic = topics.TOPICS.get(name)
        if topic is None:
            continue
        if isinstance(filters, (str, bytes)):  # JSON read back as text on some drivers
            filters = orjson.loads(filters)
        try:
            criteria = topics.parse_criteria(topic, filters or [])
        except topics.CriteriaError:
            continue  # checked when stored: only a row written by hand gets here
        found.append(_Target(sub_id, name, criteria, int(counted), int(start_after)))
    return found


def _event(row: Any) -> Event:
    return Event(
        row.topic,
        row.focus_type,
        row.focus_id,
        row.focus_version,
        row.patient_id,
        row.care_plan_id,
        row.decision,
        row.focus_deleted,
    )


def dispatch(tx: Tx, limit: int = DISPATCH_BATCH) -> int:
    """Number a batch of new events for the subscriptions they match, oldest first; events
    nobody matched are deleted. One dispatcher at a time (PostgreSQL: a lease row locked
    with SKIP LOCKED, so a second one returns at once). Returns the events handled."""
    if not state.take_lease(tx, "dispatch"):
        return 0
    rows = tx.conn.execute(
        sa.select(outbox_event)
        .where(sa.not_(outbox_event.c.dispatched))
        .order_by(outbox_event.c.id)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    targets = _targets(tx)
    numbers = {t.sub_id: t.counted for t in targets}
    numbered: list[dict[str, Any]] = []
    kept: list[int] = []
    dropped: list[int] = []
    for row in rows:
        event = _event(row)
        matched = [
            t
            for t in targets
            if t.topic == event.topic and row.id > t.start_after and t.criteria.matches(event)
        ]
        for target in matched:
            numbers[target.sub_id] += 1
            numbered.append(
                {
                    "sub_id": target.sub_id,
                    "event_number": numbers[target.sub_id],
                    "event_id": row.id,
                    "delivered": None,
                }
            )
        (kept if matched else dropped).append(row.id)
    conn = tx.conn
    if numbered:
        conn.execute(subscription_event.insert(), numbered)
        for target in targets:
            if numbers[target.sub_id] != target.counted:
                conn.execute(
                    subscription_state.update()
                    .where(subscription_state.c.sub_id == target.sub_id)
                    .values(events_since_start=numbers[target.sub_id])
                )
    if kept:
        conn.execute(
            outbox_event.update().where(outbox_event.c.id.in_(kept)).values(dispatched=True)
        )
    if dropped:
        conn.execute(outbox_event.delete().where(outbox_event.c.id.in_(dropped)))
    return len(rows)
