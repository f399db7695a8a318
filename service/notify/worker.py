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
import time
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
BATCH = 20  # notifications of one subscription per unit (one commit for them all)
BATCH_SECONDS = 2.0
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
    due: state.Due  # the subscription's state and delivery row
    body: Json | None  # the Subscription resource (None: gone)
    spec: subscription.Spec | None  # what it asks for (None: unreadable)
    kind: str | None  # handshake | heartbeat | event-notification; None: nothing to send
    events: list[Numbered] = field(default_factory=list)  # to send, in order
    foci: dict[tuple[str, str, int | None], Focus] = field(default_factory=dict)
    ended: bool = False  # its `end` has passed: it turns off, nothing more is sent

    @property
    def changed(self) -> bool:
        """Its owner changed the subscription since the worker last looked: start afresh."""
        return self.due.seen_version != self.due.version


@dataclass(frozen=True)
class Sent:
    """What a delivery did: how many of the job's events were delivered, and the outcome of
    its last request (a failure stops the batch: later events wait behind it)."""

    events: int
    outcome: Outcome


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
    """The focus resources of `events` at their versions, for full-resource content (the
    others name them only)."""
    if content != "full-resource":
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
        # The Subscription and what it asks for, by id, with the version they are of.
        self._specs: dict[str, tuple[int, Json, subscription.Spec | None]] = {}
        self._lease_until: datetime | None = None  # SQLite: how long this process holds it

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
        if self.store.sqlite and self._lease_until is not None:
            # Handed over at once: only a worker that died leaves it to run out.
            self.store.run(lambda tx: state.release_lease(tx, LEASE, self.holder))
            self._lease_until = None

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

    def _hold(self, now: datetime, needed: timedelta) -> bool:
        """SQLite: hold the delivery lease for at least `needed` from `now`. It is taken for
        LEASE_TTL more than that, so most passes find it held and write nothing."""
        if self._lease_until is not None and now + needed <= self._lease_until:
            return True
        ttl = needed + LEASE_TTL
        if self.store.run(lambda tx: state.hold_lease(tx, LEASE, self.holder, now, ttl)):
            self._lease_until = now + ttl
            return True
        self._lease_until = None
        return False

    # --- one delivery --------------------------------------------------------------------------

    def deliver_one(self, sender: Sender, now: datetime) -> bool:
        if self.store.sqlite:
            job = self.store.run(lambda tx: self.job(tx, now, lock=False), read_only=True)
            if job is None:
                return False
            sent = None
            if job.kind is not None and job.spec is not None:
                longest = BATCH_SECONDS + job.spec.timeout + 5  # the sends, and recording them
                if not self._hold(now, timedelta(seconds=longest)):
                    return False
                sent = self.send(sender, job, now)
            self.store.run(lambda tx: self.record(tx, job, sent, self.clock()))
            return True

        def unit(tx: Tx) -> bool:
            job = self.job(tx, now, lock=True)
            if job is None:
                return False
            sent = self.send(sender, job, now) if job.kind is not None else None
            self.record(tx, job, sent, self.clock())
            return True

        return bool(self.store.run(unit))

    def job(self, tx: Tx, now: datetime, *, lock: bool) -> Job | None:
        """The next subscription with work, and what to send it."""
        due = state.due(tx, now, lock=lock)
        if due is None:
            return None
        body, spec = self._resource(tx, due)
        job = Job(due, body, spec, None)
        if body is None or spec is None:
            return job
        if _ended(body, now):
            job.ended = True
        elif due.status == "requested":
            job.kind = "handshake"
        else:
            job.events = state.pending(tx, due.sub_id, spec.max_count * BATCH)
            if job.events:
                job.kind = "event-notification"
                job.foci = foci_of(tx, job.events, spec.content)
            elif due.heartbeat_due is not None and due.heartbeat_due <= now and not job.changed:
                job.kind = "heartbeat"
        return job

    def _resource(self, tx: Tx, due: state.Due) -> tuple[Json | None, subscription.Spec | None]:
        """The Subscription and what it asks for; kept per version, since the state row
        follows the resource's version."""
        cached = self._specs.get(due.sub_id)
        if cached is not None and cached[0] == due.version:
            return cached[1], cached[2]
        stored = tx.get("Subscription", due.sub_id)
        if stored is None or stored.deleted or stored.body is None:
            return None, None
        spec, _ = subscription.read(stored.body)
        if stored.version == due.version:
            self._specs[due.sub_id] = (stored.version, stored.body, spec)
        return stored.body, spec

    def send(self, sender: Sender, job: Job, now: datetime) -> Sent:
        """The job's notifications, one after the other while they succeed, within BATCH
        notifications and BATCH_SECONDS (later events wait for the next unit)."""
        spec = job.spec
        assert spec is not None and job.kind is not None
        if not endpoints.allowed(spec.endpoint, self.policy.prefixes):
            return Sent(
                0, Outcome(False, "endpoint not allowed by CAREPLAN_SUBSCRIPTION_ENDPOINTS", True)
            )
        if job.kind != "event-notification":
            return Sent(0, self._post(sender, job, [], now))
        size = spec.max_count
        chunks = [job.events[i : i + size] for i in range(0, len(job.events), size)]
        started = time.monotonic()
        delivered = 0
        for chunk in chunks:
            outcome = self._post(sender, job, chunk, now)
            if not outcome.ok:
                return Sent(delivered, outcome)
            delivered += len(chunk)
            if time.monotonic() - started > BATCH_SECONDS:
                break
        return Sent(delivered, Outcome(True))

    def _post(self, sender: Sender, job: Job, events: list[Numbered], now: datetime) -> Outcome:
        spec, due = job.spec, job.due
        assert spec is not None and job.kind is not None
        since = events[-1].number if events else due.events_since_start
        status = "requested" if job.kind == "handshake" else "active"
        body = notifications.encode(
            notifications.bundle(
                due.sub_id,
                due.topic,
                status,
                job.kind,
                since,
                events,
                spec.content,
                due.base_url,
                now,
                job.foci,
            )
        )
        headers = dict(spec.headers)
        headers["Content-Type"] = "application/fhir+json"
        headers[notifications.SIGNATURE_HEADER] = notifications.sign(body, due.secret)
        outcome = sender.post(spec.endpoint, body, headers, spec.timeout)
        if not outcome.ok:
            logger.warning(
                "notification not delivered",
                extra={
                    "subscription": due.sub_id,
                    "notification": job.kind,
                    "reason": outcome.error,
                    "attempt": (0 if job.changed else due.attempts) + 1,
                },
            )
        return outcome

    def record(self, tx: Tx, job: Job, sent: Sent | None, now: datetime) -> None:
        """What a delivery (or its absence) leaves: delivered events, a status, the next
        retry, the next heartbeat."""
        due = job.due
        sub_id, seen = due.sub_id, due.version
        heartbeat = due.heartbeat_seconds
        next_beat = now + timedelta(seconds=heartbeat) if heartbeat else None
        if job.spec is None or sent is None:
            # Nothing sent: the owner changed it (start afresh), or it ended, is gone or is
            # unreadable (then it stops: it would be picked again and again).
            if job.body is None:
                state.set_status(tx, sub_id, due.version, "off")
            elif job.ended:
                seen = self._set_status(tx, job, "off", None) or seen
            elif job.spec is None:
                seen = self._set_status(tx, job, "error", "the Subscription cannot be read") or seen
            if job.changed or job.spec is None:
                beat = next_beat if job.spec is not None else None
                state.update_delivery(tx, sub_id, state.Delivery(seen, heartbeat_due=beat))
            else:
                kept = state.Delivery(
                    seen,
                    due.attempts,
                    due.failing_since,
                    None,
                    due.heartbeat_due,
                )
                state.update_delivery(tx, sub_id, kept)
            return
        if sent.events:
            state.mark_delivered(tx, sub_id, job.events[sent.events - 1].number, now)
        outcome = sent.outcome
        if outcome.ok:
            if job.kind == "handshake":
                seen = self._set_status(tx, job, "active", None) or seen
            state.update_delivery(tx, sub_id, state.Delivery(seen, heartbeat_due=next_beat))
            return
        # A failure after deliveries starts a new run of failures.
        fresh = job.changed or sent.events > 0
        attempts = (0 if fresh else due.attempts) + 1
        failing_since = (None if fresh else due.failing_since) or now
        error = (outcome.error or "failed")[:255]
        gave_up = (now - failing_since).total_seconds() >= self.policy.give_up
        next_attempt = None
        if job.kind == "handshake" or outcome.final or gave_up:
            why = f"{job.kind} failed: {error}" if job.kind == "handshake" else error
            if gave_up and not outcome.final and job.kind != "handshake":
                why = f"endpoint failing since {failing_since.isoformat()}Z: {error}"
            seen = self._set_status(tx, job, "error", why) or seen
        else:
            next_attempt = now + timedelta(seconds=self.policy.delay(attempts))
        failing = state.Delivery(
            seen, attempts, failing_since, next_attempt, due.heartbeat_due, error
        )
        state.update_delivery(tx, sub_id, failing)

    def _set_status(self, tx: Tx, job: Job, status: str, error: str | None) -> int | None:
        """The Subscription (a new version) and its state row in `status`; the new version,
        or None when its owner changed it meanwhile (their change stands)."""
        sub_id = job.due.sub_id
        current = tx.get("Subscription", sub_id, lock=True)
        if current is None or current.deleted or current.version != job.due.version:
            return None
        if current.body is None:
            return None
        stored = tx.replace(current, subscription.with_status(current.body, status, error))
        state.set_status(tx, sub_id, stored.version, status)
        logger.info("subscription status changed", extra={"subscription": sub_id, "status": status})
        return stored.version


def _ended(body: Json, now: datetime) -> bool:
    end = body.get("end")
    try:
        return isinstance(end, str) and parse_range(end)[0] <= now
    except ValueError:
        return False


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
