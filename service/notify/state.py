"""What the service keeps about each Subscription beside the resource: its state row (topic,
filters, status, the signing secret, the event counter), its delivery row (retries, the next
heartbeat) and its numbered events; and the leases that make singleton jobs single."""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from service.notify.topics import Event
from service.store.repository import Tx
from service.store.tables import (
    delivery_state,
    outbox_event,
    subscription_event,
    subscription_state,
    worker_lease,
)

Json = dict[str, Any]


@dataclass(frozen=True)
class SubscriptionRow:
    sub_id: str
    version: int  # of the Subscription resource this row follows
    topic: str  # the topic's name (topics.TOPICS)
    filters: tuple[str, ...]
    status: str
    base_url: str  # the FHIR base the subscriber used: notifications' absolute URLs
    heartbeat_seconds: int | None
    events_since_start: int = 0


@dataclass(frozen=True)
class Numbered:
    """One event of one subscription: its number, what happened and when."""

    number: int
    event: Event
    occurred: datetime
    delivered: datetime | None = None


def _row(found: Any) -> SubscriptionRow:
    filters = found.filters
    if isinstance(filters, (str, bytes)):
        filters = orjson.loads(filters)
    return SubscriptionRow(
        found.sub_id,
        found.version,
        found.topic,
        tuple(filters or ()),
        found.status,
        found.base_url,
        found.heartbeat_seconds,
        int(found.events_since_start),
    )


def get(tx: Tx, sub_id: str) -> SubscriptionRow | None:
    found = tx.conn.execute(
        sa.select(subscription_state).where(subscription_state.c.sub_id == sub_id)
    ).first()
    return _row(found) if found is not None else None


def secret_of(tx: Tx, sub_id: str) -> str:
    """The signing secret: for the worker's signature only, never for an API answer."""
    found = tx.conn.execute(
        sa.select(subscription_state.c.secret).where(subscription_state.c.sub_id == sub_id)
    ).scalar_one()
    return str(found)


def save(tx: Tx, row: SubscriptionRow, secret: str | None, now: datetime) -> None:
    """Create or update a subscription's state (a new secret only when given). The event
    counter is the dispatcher's: an update leaves it alone."""
    values = {
        "version": row.version,
        "topic": row.topic,
        "filters": list(row.filters),
        "status": row.status,
        "base_url": row.base_url,
        "heartbeat_seconds": row.heartbeat_seconds,
    }
    if secret is not None:
        values["secret"] = secret
    conn = tx.conn
    updated = conn.execute(
        subscription_state.update()
        .where(subscription_state.c.sub_id == row.sub_id)
        .values(**values)
    )
    if updated.rowcount:
        return
    values.setdefault("secret", secrets.token_urlsafe(32))
    last = conn.execute(sa.select(sa.func.max(outbox_event.c.id))).scalar()
    conn.execute(
        subscription_state.insert().values(
            sub_id=row.sub_id,
            events_since_start=0,
            start_after=int(last or 0),
            created=now,
            **values,
        )
    )
    conn.execute(delivery_state.insert().values(sub_id=row.sub_id, seen_version=0, attempts=0))


def set_status(tx: Tx, sub_id: str, version: int, status: str) -> None:
    tx.conn.execute(
        subscription_state.update()
        .where(subscription_state.c.sub_id == sub_id)
        .values(version=version, status=status)
    )


def events(
    tx: Tx, sub_id: str, since: int = 1, until: int | None = None, limit: int = 1000
) -> list[Numbered]:
    """A subscription's events from number `since` to `until`, in order."""
    e, o = subscription_event, outbox_event
    where = [e.c.sub_id == sub_id, e.c.event_number >= since]
    if until is not None:
        where.append(e.c.event_number <= until)
    rows = tx.conn.execute(
        sa.select(e.c.event_number, e.c.delivered, o)
        .join(o, o.c.id == e.c.event_id)
        .where(*where)
        .order_by(e.c.event_number)
        .limit(limit)
    ).all()
    return [_numbered(r) for r in rows]


def pending(tx: Tx, sub_id: str, limit: int) -> list[Numbered]:
    """The first `limit` events not delivered yet, in order."""
    e, o = subscription_event, outbox_event
    rows = tx.conn.execute(
        sa.select(e.c.event_number, e.c.delivered, o)
        .join(o, o.c.id == e.c.event_id)
        .where(e.c.sub_id == sub_id, e.c.delivered.is_(None))
        .order_by(e.c.event_number)
        .limit(limit)
    ).all()
    return [_numbered(r) for r in rows]


def _numbered(row: Any) -> Numbered:
    event = Event(
        row.topic,
        row.focus_type,
        row.focus_id,
        row.focus_version,
        row.patient_id,
        row.care_plan_id,
        row.decision,
    )
    return Numbered(int(row.event_number), event, row.occurred, row.delivered)


def mark_delivered(tx: Tx, sub_id: str, numbers: list[int], at: datetime) -> None:
    if numbers:
        tx.conn.execute(
            subscription_event.update()
            .where(
                subscription_event.c.sub_id == sub_id,
                subscription_event.c.event_number.in_(numbers),
            )
            .values(delivered=at)
        )


# --- delivery rows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A subscription a worker has work for, with its delivery row as read."""

    sub_id: str
    version: int
    status: str
    seen_version: int
    attempts: int
    failing_since: datetime | None
    heartbeat_due: datetime | None


def due(tx: Tx, now: datetime, *, lock: bool) -> Due | None:
    """One subscription with work now: a handshake, undelivered events or a heartbeat, and
    not waiting out a retry delay (or changed by its owner since: then at once). With `lock`
    (PostgreSQL) its delivery row stays locked until the transaction ends; rows other workers
    hold are skipped."""
    s, d = subscription_state, delivery_state
    waiting = sa.exists().where(
        subscription_event.c.sub_id == s.c.sub_id, subscription_event.c.delivered.is_(None)
    )
    work = sa.or_(s.c.status == "requested", d.c.heartbeat_due <= now, waiting)
    ready = sa.or_(d.c.next_attempt.is_(None), d.c.next_attempt <= now)
    stmt = (
        sa.select(
            s.c.sub_id,
            s.c.version,
            s.c.status,
            d.c.seen_version,
            d.c.attempts,
            d.c.failing_since,
            d.c.heartbeat_due,
        )
        .join(d, d.c.sub_id == s.c.sub_id)
        .where(
            s.c.status.in_(("requested", "active")),
            sa.or_(d.c.seen_version != s.c.version, sa.and_(ready, work)),
        )
        .order_by(d.c.next_attempt, s.c.sub_id)
        .limit(1)
    )
    if lock:
        stmt = stmt.with_for_update(of=d, skip_locked=True)
    found = tx.conn.execute(stmt).first()
    return Due(*found) if found is not None else None


def update_delivery(tx: Tx, sub_id: str, **values: Any) -> None:
    tx.conn.execute(delivery_state.update().where(delivery_state.c.sub_id == sub_id).values(values))


# --- leases ------------------------------------------------------------------------------------


def _ensure_lease(tx: Tx, name: str) -> None:
    insert = (sqlite if tx.sqlite else postgresql).insert(worker_lease)
    tx.conn.execute(insert.values(name=name).on_conflict_do_nothing())


def take_lease(tx: Tx, name: str) -> bool:
    """PostgreSQL: lock the lease row for this transaction, unless another holds it (then
    False at once). SQLite has one writer at a time: always True."""
    if tx.sqlite:
        return True
    select = sa.select(worker_lease.c.name).where(worker_lease.c.name == name)
    found = tx.conn.execute(select.with_for_update(skip_locked=True)).first()
    if found is None:
        _ensure_lease(tx, name)
        found = tx.conn.execute(select.with_for_update(skip_locked=True)).first()
    return found is not None


def hold_lease(tx: Tx, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew a lease that outlives transactions: held by `holder` until it expires
    (a holder that died is replaced once its lease has run out)."""
    _ensure_lease(tx, name)
    taken = tx.conn.execute(
        worker_lease.update()
        .where(
            worker_lease.c.name == name,
            sa.or_(
                worker_lease.c.holder == holder,
                worker_lease.c.holder.is_(None),
                worker_lease.c.expires < now,
            ),
        )
        .values(holder=holder, expires=now + ttl)
    )
    return bool(taken.rowcount)


def release_lease(tx: Tx, name: str, holder: str) -> None:
    tx.conn.execute(
        worker_lease.update()
        .where(worker_lease.c.name == name, worker_lease.c.holder == holder)
        .values(holder=None, expires=None)
    )
