"""What the service keeps about each Subscription beside the resource: its state row (topic,
filters, status, the signing secret, the event counter), its delivery row (retries, the next
heartbeat) and its numbered events; and the leases that make singleton jobs single."""

import secrets
from dataclasses import dataclass, field
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


_S, _D, _E, _O = subscription_state, delivery_state, subscription_event, outbox_event
_EVENT_COLUMNS = (
    _E.c.event_number,
    _E.c.delivered,
    _O.c.topic,
    _O.c.focus_type,
    _O.c.focus_id,
    _O.c.focus_version,
    _O.c.patient_id,
    _O.c.care_plan_id,
    _O.c.decision,
    _O.c.focus_deleted,
    _O.c.occurred,
)
# Statements built once (the worker runs them on every pass): prepared on the driver's cursor
# by the store's runner (store/engine/prepared.py).
_EVENTS = (
    sa.select(*_EVENT_COLUMNS)
    .join(_O, _O.c.id == _E.c.event_id)
    .where(
        _E.c.sub_id == sa.bindparam("sub_"),
        _E.c.event_number >= sa.bindparam("since_"),
        _E.c.event_number <= sa.bindparam("until_"),
    )
    .order_by(_E.c.event_number)
    .limit(sa.bindparam("limit_"))
)
_PENDING = (
    sa.select(*_EVENT_COLUMNS)
    .join(_O, _O.c.id == _E.c.event_id)
    .where(_E.c.sub_id == sa.bindparam("sub_"), _E.c.delivered.is_(None))
    .order_by(_E.c.event_number)
    .limit(sa.bindparam("limit_"))
)
# Delivered in order: the undelivered ones up to the last sent are those just sent.
_MARK_DELIVERED = (
    _E.update()
    .where(
        _E.c.sub_id == sa.bindparam("sub_"),
        _E.c.event_number <= sa.bindparam("through_"),
        _E.c.delivered.is_(None),
    )
    .values(delivered=sa.bindparam("at_"))
)
_SET_STATUS = (
    _S.update()
    .where(_S.c.sub_id == sa.bindparam("sub_"))
    .values(version=sa.bindparam("version_"), status=sa.bindparam("status_"))
)
_UPDATE_DELIVERY = (
    _D.update()
    .where(_D.c.sub_id == sa.bindparam("sub_"))
    .values(
        seen_version=sa.bindparam("seen_version_"),
        attempts=sa.bindparam("attempts_"),
        failing_since=sa.bindparam("failing_since_"),
        next_attempt=sa.bindparam("next_attempt_"),
        heartbeat_due=sa.bindparam("heartbeat_due_"),
        last_error=sa.bindparam("last_error_"),
    )
)
_NOW: sa.BindParameter[datetime] = sa.bindparam("now_", type_=sa.DateTime)
_DUE = (
    sa.select(
        _S.c.sub_id,
        _S.c.version,
        _S.c.status,
        _S.c.topic,
        _S.c.base_url,
        _S.c.heartbeat_seconds,
        _S.c.events_since_start,
        _S.c.secret,
        _D.c.seen_version,
        _D.c.attempts,
        _D.c.failing_since,
        _D.c.heartbeat_due,
    )
    .join(_D, _D.c.sub_id == _S.c.sub_id)
    .where(
        sa.or_(_S.c.status == "requested", _S.c.status == "active"),
        sa.or_(
            _D.c.seen_version != _S.c.version,
            sa.and_(
                sa.or_(_D.c.next_attempt.is_(None), _D.c.next_attempt <= _NOW),
                sa.or_(
                    _S.c.status == "requested",
                    _D.c.heartbeat_due <= _NOW,
                    sa.exists().where(_E.c.sub_id == _S.c.sub_id, _E.c.delivered.is_(None)),
                ),
            ),
        ),
    )
    .order_by(_S.c.sub_id)
    .limit(1)
)
_DUE_LOCKED = _DUE.with_for_update(of=_D, skip_locked=True)


def events(
    tx: Tx, sub_id: str, since: int = 1, until: int | None = None, limit: int = 1000
) -> list[Numbered]:
    """A subscription's events from number `since` to `until`, in order."""
    params = {"sub_": sub_id, "since_": since, "until_": until or 2**62, "limit_": limit}
    return [_numbered(r) for r in tx.db.rows(_EVENTS, params)]


def pending(tx: Tx, sub_id: str, limit: int) -> list[Numbered]:
    """The first `limit` events not delivered yet, in order."""
    return [_numbered(r) for r in tx.db.rows(_PENDING, {"sub_": sub_id, "limit_": limit})]


def _numbered(row: Any) -> Numbered:
    number, delivered, *event, occurred = row
    return Numbered(int(number), Event(*event), occurred, delivered)


def mark_delivered(tx: Tx, sub_id: str, through: int, at: datetime) -> None:
    """The events up to number `through` are delivered (those just sent)."""
    tx.db.write(_MARK_DELIVERED, {"sub_": sub_id, "through_": through, "at_": at})


def set_status(tx: Tx, sub_id: str, version: int, status: str) -> None:
    tx.db.write(_SET_STATUS, {"sub_": sub_id, "version_": version, "status_": status})


# --- delivery rows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A subscription a worker has work for: its state and its delivery row, as read."""

    sub_id: str
    version: int
    status: str
    topic: str
    base_url: str
    heartbeat_seconds: int | None
    events_since_start: int
    secret: str = field(repr=False)
    seen_version: int
    attempts: int
    failing_since: datetime | None
    heartbeat_due: datetime | None


def due(tx: Tx, now: datetime, *, lock: bool) -> Due | None:
    """One subscription with work now: a handshake, undelivered events or a heartbeat, and
    not waiting out a retry delay (or changed by its owner since: then at once). With `lock`
    (PostgreSQL) its delivery row stays locked until the transaction ends; rows other workers
    hold are skipped."""
    found = tx.db.rows(_DUE_LOCKED if lock else _DUE, {"now_": now})
    return Due(*found[0]) if found else None


@dataclass(frozen=True)
class Delivery:
    """A delivery row as a worker leaves it."""

    seen_version: int
    attempts: int = 0
    failing_since: datetime | None = None
    next_attempt: datetime | None = None
    heartbeat_due: datetime | None = None
    last_error: str | None = None


def update_delivery(tx: Tx, sub_id: str, delivery: Delivery) -> None:
    values = {f"{k}_": v for k, v in delivery.__dict__.items()}
    tx.db.write(_UPDATE_DELIVERY, {"sub_": sub_id, **values})


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
