"""The delivery worker: fires due timers, dispatches new outbox events and sends
notifications, in order per subscription, with retries.

Runs inside ``careplan serve`` (CAREPLAN_DELIVERY_WORKER, default on) and on its own as
``careplan worker``. One pass of a thread: due timers (timers.py), new events
(outbox.dispatch), then one subscription with work: its handshake, its next undelivered
events (up to maxCount in one notification) or its heartbeat.

Sharing the work (PostgreSQL): a thread locks the subscription's ``delivery_state`` row with
``SELECT ... FOR UPDATE SKIP LOCKED`` and keeps the transaction open while it sends, then marks
the events delivered and commits. Another worker skips a locked row, so no two send to one
subscription at once and nothing is sent twice; a worker that dies mid-delivery loses its
connection, its transaction rolls back, and the next worker sends those events again with the
same event numbers (the only duplicates, and the numbers show them). A job queue library was
not used: the events must be written in the use case's own transaction, which SKIP LOCKED rows
in the same database give for free.

SQLite has one writer and no row locks: a transaction held open during an HTTP call would
stop every write of the service. There, one worker per database delivers (a lease row with an
expiry, taken when there is work), reading in one transaction and recording in another.

Retries: a failed notification is tried again after CAREPLAN_DELIVERY_BACKOFF_SECONDS,
doubling up to CAREPLAN_DELIVERY_BACKOFF_MAX_SECONDS, each delay drawn between half and all of
it (jitter), until the endpoint has failed for CAREPLAN_DELIVERY_GIVE_UP_SECONDS: then the
subscription turns ``error`` (its events keep being numbered and kept; re-requesting it,
status ``requested``, delivers them after a new handshake). A failed handshake is ``error`` at
once (the IG). Redirects are failures: they are never followed.
"""

import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.fhir.dates import parse_range, utc_now
from service.notify import endpoints, notifications, outbox, state, subscription, timers
from service.notify.notifications import Focus
from service.notify.state import Numbered
from service.settings import Settings
from service.store.errors import Gone, NotFound
from service.store.repository import Tx
from service.store.runner import Store
from service.store.tables import event_timer, outbox_event

logger = logging.getLogger("careplan.delivery")
LEASE = "sqlite-delivery"
LEASE_TTL = timedelta(seconds=10)
Json = dict[str, Any]


@dataclass(frozen=True)
class Policy:
    prefixes: tuple[str, ...]
    backoff: float
    backoff_max: float
    give_up: float
    poll: float
    threads: int

    @classmethod
    def of(cls, settings: Settings) -> "Policy":
        return cls(
            endpoints.parse_prefixes(settings.subscription_endpoints),
            settings.delivery_backoff_seconds,
            settings.delivery_backoff_max_seconds,
            settings.delivery_give_up_seconds,
            settings.delivery_poll_seconds,
            settings.delivery_threads,
        )

    def delay(self, attempts: int, draw: Callable[[], float] = random.random) -> float:
        """The wait after the `attempts`-th failure in a row: doubling from the first delay up
        to the longest, and a random point between half and all of it, so subscribers that
        failed together do not all retry together."""
        base = min(self.backoff_max, self.backoff * 2 ** min(attempts - 1, 62))
        return float(base / 2 + draw() * base / 2)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None  # a status code or the kind of failure, never a body or header
    final: bool = False  # no retry helps (the endpoint is not allowed any more)


@dataclass
class Job:
    due: state.Due
    row: state.SubscriptionRow
    resource_version: int
    body: Json | None
    spec: subscription.Spec | None
    kind: str | None  # handshake | heartbeat | event-notification; None: nothing to send
    events: list[Numbered] = field(default_factory=list)
    foci: dict[tuple[str, str, int | None], Focus] = field(default_factory=dict)
    secret: str = ""
    ended: bool = False  # its `end` has passed: it turns off, nothing more is sent

    @property
    def changed(self) -> bool:
        """Its owner changed the subscription since the worker last looked: start afresh."""
        return self.due.seen_version != self.row.version


class Sender:
    """HTTP with httpx: no redirects followed, the subscription's timeout on every phase, the
    answer's body never read."""

    def __init__(self) -> None:
        self.client = httpx.Client(follow_redirects=False, trust_env=False)

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
        try:
            with self.client.stream(
                "POST", url, content=body, headers=headers, timeout=timeout
            ) as response:
                status = response.status_code
        except httpx.TimeoutException:
            return Outcome(False, "timeout")
        except httpx.HTTPError as exc:
            return Outcome(False, f"connection failed ({type(exc).__name__})")
        if 200 <= status < 300:
            return Outcome(True)
        if 300 <= status < 400:
            return Outcome(False, f"HTTP {status}: redirects are not followed")
        return Outcome(False, f"HTTP {status}")

    def close(self) -> None:
        self.client.close()


def _focus(tx: Tx, item: Numbered) -> Focus:
    event = item.event
    if event.focus_version is None:
        found = tx.get(event.focus_type, event.focus_id)
        return Focus(found.body if found else None, found is None or found.deleted)
    try:
        entry = tx.vread(event.focus_type, event.focus_id, event.focus_version)
    except Gone:
        return Focus(None, deleted=True)
    except NotFound:
        return Focus(None)
    return Focus(entry.body)


def foci_of(
    tx: Tx, events: list[Numbered], content: str
) -> dict[tuple[str, str, int | None], Focus]:
    """The focus resources of `events` at their versions (empty for empty content)."""
    if content == "empty":
        return {}
    found: dict[tuple[str, str, int | None], Focus] = {}
    for item in events:
        e = item.event
        key = (e.focus_type, e.focus_id, e.focus_version)
        if key not in found:
            found[key] = _focus(tx, item)
    return found


class DeliveryWorker:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        name: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        # One attempt per unit: running a delivery unit again would send again.
        self.store = Store(engine, retries=1)
        self.policy = Policy.of(settings)
        self.holder = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock or (lambda: utc_now().replace(tzinfo=None))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- running -------------------------------------------------------------------------------

    def start(self) -> None:
        count = 1 if self.store.sqlite else self.policy.threads
        for index in range(count):
            thread = threading.Thread(
                target=self._loop, args=(index,), name=f"careplan-delivery-{index}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        logger.info("delivery worker started", extra={"threads": count})

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        outbox.committed.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def request_stop(self) -> None:
        """From a signal handler: the threads finish their pass and end."""
        self._stop.set()
        outbox.committed.set()

    def run_forever(self) -> None:
        """`careplan worker`: until request_stop()."""
        self.start()
        while not self._stop.wait(0.5):
            pass
        self.stop()

    def _loop(self, index: int) -> None:
        sender = Sender()
        try:
            while not self._stop.is_set():
                try:
                    busy = self.run_once(sender, housekeeping=index == 0)
                except Exception:
                    # A database or programming error: logged, and the pass is tried again.
                    logger.exception("delivery pass failed")
                    busy = False
                if not busy:
                    outbox.committed.wait(self.policy.poll)
                    outbox.committed.clear()
        finally:
            sender.close()

    def run_once(self, sender: Sender, *, housekeeping: bool = True) -> bool:
        """One pass; whether it did anything (then the next pass starts at once)."""
        now = self.clock()
        work = self.store.run(lambda tx: _work(tx, now, housekeeping), read_only=True)
        if not any(work):
            return False
        if self.store.sqlite and not self._hold(now, LEASE_TTL):
            return False
        timers_due, events_new, deliveries_due = work
        did = False
        if timers_due:
            did |= bool(self.store.run(lambda tx: timers.fire_due(tx, now)))
        if events_new or timers_due:
            dispatched = self.store.run(outbox.dispatch)
            if dispatched:
                did = True
                outbox.committed.set()  # the other threads may have subscriptions to serve now
        if deliveries_due or did:
            did |= self.deliver_one(sender, self.clock())
        return did

    def _hold(self, now: datetime, ttl: timedelta) -> bool:
        return bool(self.store.run(lambda tx: state.hold_lease(tx, LEASE, self.holder, now, ttl)))

    # --- one delivery --------------------------------------------------------------------------

    def deliver_one(self, sender: Sender, now: datetime) -> bool:
        if self.store.sqlite:
            job = self.store.run(lambda tx: self.job(tx, now, lock=False), read_only=True)
            if job is None:
                return False
            outcome = None
            if job.kind is not None and job.spec is not None:
                if not self._hold(now, LEASE_TTL + timedelta(seconds=job.spec.timeout)):
                    return False
                outcome = self.send(sender, job, now)
            self.store.run(lambda tx: self.record(tx, job, outcome, self.clock()))
            return True

        def unit(tx: Tx) -> bool:
            job = self.job(tx, now, lock=True)
            if job is None:
                return False
            outcome = self.send(sender, job, now) if job.kind is not None else None
            self.record(tx, job, outcome, self.clock())
            return True

        return bool(self.store.run(unit))

    def job(self, tx: Tx, now: datetime, *, lock: bool) -> Job | None:
        """The next subscription with work, and what to send it."""
        due = state.due(tx, now, lock=lock)
        if due is None:
            return None
        row = state.get(tx, due.sub_id)
        stored = tx.get("Subscription", due.sub_id)
        if row is None or stored is None or stored.deleted or stored.body is None:
            return Job(due, row or _gone_row(due), 0, None, None, None)
        spec, _ = subscription.read(stored.body)
        job = Job(due, row, stored.version, stored.body, spec, None)
        if spec is None:
            return job
        if _ended(stored.body, now):
            job.ended = True
            return job
        if row.status == "requested":
            job.kind = "handshake"
        else:
            job.events = state.pending(tx, due.sub_id, spec.max_count)
            if job.events:
                job.kind = "event-notification"
                job.foci = foci_of(tx, job.events, spec.content)
            elif due.heartbeat_due is not None and due.heartbeat_due <= now and not job.changed:
                job.kind = "heartbeat"
        if job.kind is not None:
            job.secret = state.secret_of(tx, due.sub_id)
        return job

    def send(self, sender: Sender, job: Job, now: datetime) -> Outcome:
        spec = job.spec
        assert spec is not None and job.kind is not None
        if not endpoints.allowed(spec.endpoint, self.policy.prefixes):
            return Outcome(False, "endpoint not allowed by CAREPLAN_SUBSCRIPTION_ENDPOINTS", True)
        since = job.events[-1].number if job.events else job.row.events_since_start
        status = "requested" if job.kind == "handshake" else "active"
        body = notifications.encode(
            notifications.bundle(
                job.row.sub_id,
                job.row.topic,
                status,
                job.kind,
                since,
                job.events,
                spec.content,
                job.row.base_url,
                now,
                job.foci,
            )
        )
        headers = dict(spec.headers)
        headers["Content-Type"] = "application/fhir+json"
        headers[notifications.SIGNATURE_HEADER] = notifications.sign(body, job.secret)
        outcome = sender.post(spec.endpoint, body, headers, spec.timeout)
        if not outcome.ok:
            logger.warning(
                "notification not delivered",
                extra={
                    "subscription": job.row.sub_id,
                    "notification": job.kind,
                    "reason": outcome.error,
                    "attempt": (0 if job.changed else job.due.attempts) + 1,
                },
            )
        return outcome

    def record(self, tx: Tx, job: Job, outcome: Outcome | None, now: datetime) -> None:
        """What a send (or its absence) leaves: delivered events, a status, the next retry."""
        sub_id = job.row.sub_id
        seen = job.row.version
        heartbeat = job.row.heartbeat_seconds
        next_beat = now + timedelta(seconds=heartbeat) if heartbeat else None
        if job.spec is None or outcome is None:
            # Nothing sent: the owner changed it (start afresh), or it is gone or unreadable
            # (then it stops: it would be picked again and again).
            if job.body is None:
                state.set_status(tx, sub_id, job.row.version, "off")
            elif job.ended:
                seen = self._set_status(tx, job, "off", None) or seen
            elif job.spec is None:
                seen = self._set_status(tx, job, "error", "the Subscription cannot be read") or seen
            values: dict[str, Any] = {"seen_version": seen}
            if job.changed or job.spec is None:
                values |= {"attempts": 0, "failing_since": None, "next_attempt": None}
                values |= {"last_error": None, "heartbeat_due": next_beat if job.spec else None}
            state.update_delivery(tx, sub_id, **values)
            return
        if outcome.ok:
            if job.kind == "handshake":
                seen = self._set_status(tx, job, "active", None) or seen
            if job.kind == "event-notification":
                state.mark_delivered(tx, sub_id, [e.number for e in job.events], now)
            state.update_delivery(
                tx,
                sub_id,
                seen_version=seen,
                attempts=0,
                failing_since=None,
                next_attempt=None,
                last_error=None,
                heartbeat_due=next_beat,
            )
            return
        attempts = (0 if job.changed else job.due.attempts) + 1
        failing_since = (None if job.changed else job.due.failing_since) or now
        error = (outcome.error or "failed")[:255]
        gave_up = (now - failing_since).total_seconds() >= self.policy.give_up
        if job.kind == "handshake" or outcome.final or gave_up:
            why = f"{job.kind} failed: {error}" if job.kind == "handshake" else error
            if gave_up and not outcome.final and job.kind != "handshake":
                why = f"endpoint failing since {failing_since.isoformat()}Z: {error}"
            seen = self._set_status(tx, job, "error", why) or seen
            next_attempt = None
        else:
            next_attempt = now + timedelta(seconds=self.policy.delay(attempts))
        state.update_delivery(
            tx,
            sub_id,
            seen_version=seen,
            attempts=attempts,
            failing_since=failing_since,
            next_attempt=next_attempt,
            last_error=error,
        )

    def _set_status(self, tx: Tx, job: Job, status: str, error: str | None) -> int | None:
        """The Subscription (a new version) and its state row in `status`; the new version,
        or None when its owner changed it meanwhile (their change stands)."""
        current = tx.get("Subscription", job.row.sub_id, lock=True)
        if current is None or current.deleted or current.version != job.resource_version:
            return None
        if current.body is None:
            return None
        stored = tx.replace(current, subscription.with_status(current.body, status, error))
        state.set_status(tx, job.row.sub_id, stored.version, status)
        logger.info(
            "subscription status changed", extra={"subscription": job.row.sub_id, "status": status}
        )
        return stored.version


def _ended(body: Json, now: datetime) -> bool:
    end = body.get("end")
    try:
        return isinstance(end, str) and parse_range(end)[0] <= now
    except ValueError:
        return False


def _gone_row(due: state.Due) -> state.SubscriptionRow:
    return state.SubscriptionRow(due.sub_id, due.version, "", (), "off", "", None)


def _work(tx: Tx, now: datetime, housekeeping: bool) -> tuple[bool, bool, bool]:
    """(timers due, events to dispatch, a subscription with work): read only."""
    timers_due = events_new = False
    if housekeeping:
        timers_due = (
            tx.conn.execute(
                sa.select(event_timer.c.task_id)
                .where(event_timer.c.fired.is_(None), event_timer.c.due <= now)
                .limit(1)
            ).first()
            is not None
        )
        events_new = (
            tx.conn.execute(
                sa.select(outbox_event.c.id).where(sa.not_(outbox_event.c.dispatched)).limit(1)
            ).first()
            is not None
        )
    return timers_due, events_new, state.due(tx, now, lock=False) is not None
