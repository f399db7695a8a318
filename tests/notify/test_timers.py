"""Time-driven events: a retry window opening, and closing with no retry, fire exactly once
each, with several workers at once and across restarts, also when the moment passed while no
worker ran or the window lay in the past when the decision was stored."""

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from service.notify import timers
from service.protocol.codes import CAREPLAN_CS
from service.settings import Settings
from service.store.tables import event_timer, outbox_event
from service.usecases import crud
from tests.api.scenario import created, day, eligible_patient, enrol, submit
from tests.notify.conftest import stop
from tests.notify.helpers import subscription
from tests.notify.test_subscription_api import subscribe, wait_status

OPENED, CLOSED = "retry-window-opened", "retry-window-closed"


@pytest.fixture
def settings(database_url: str, receiver: Any) -> Settings:
    """No worker unless a test starts one: the tests fire timers themselves."""
    return Settings(
        database_url=database_url,
        db_connect_retries=0,
        delivery_worker=False,
        subscription_endpoints=receiver.prefix,
    )


def retry_task(start: str, end: str, task_id: str = "t1") -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": task_id,
        "status": "requested",
        "intent": "plan",
        "code": {"coding": [{"system": CAREPLAN_CS, "code": "retry-flexion"}]},
        "focus": {"reference": "CarePlan/cp1"},
        "for": {"reference": "Patient/p1"},
        "authoredOn": "2026-03-03T09:00:00Z",
        "restriction": {"period": {"start": start, "end": end}},
    }


def _put(tx: Any, body: dict[str, Any]) -> Any:
    """PUT as a client that read the Task first (a Task update needs its version)."""
    current = tx.get(body["resourceType"], body["id"])
    if current is None:
        return crud.create_in(tx, dict(body), resource_id=body["id"], caller=None)
    return crud.update_in(tx, body, body["id"], current.version, caller=None)


def window_events(app: Any) -> list[tuple[str, str, datetime]]:
    with app.state.store.engine.connect() as connection:
        found = connection.execute(
            sa.select(outbox_event.c.topic, outbox_event.c.focus_id, outbox_event.c.occurred)
            .where(outbox_event.c.topic.in_((OPENED, CLOSED)))
            .order_by(outbox_event.c.id)
        ).all()
    return [tuple(r) for r in found]  # type: ignore[misc]


def test_each_fires_once_when_its_time_has_come(app, client):
    store = app.state.store
    store.run(lambda tx: _put(tx, retry_task("2026-03-10", "2026-03-17")))
    opens, closes = datetime(2026, 3, 10), datetime(2026, 3, 18)

    def fire(at: datetime) -> int:
        return int(store.run(lambda tx: timers.fire_due(tx, at)))

    assert fire(opens - timedelta(seconds=1)) == 0
    assert fire(opens) == 1
    assert window_events(app) == [(OPENED, "t1", opens)]
    assert fire(closes - timedelta(seconds=1)) == 0
    # The worker was down when the window closed: it catches up, with the time it closed.
    assert fire(closes + timedelta(days=3)) == 1
    assert window_events(app) == [(OPENED, "t1", opens), (CLOSED, "t1", closes)]
    assert fire(closes + timedelta(days=30)) == 0  # once means once


def test_a_moved_window_moves_its_timers_but_a_fired_one_stays_fired(app, client):
    store = app.state.store
    store.run(lambda tx: _put(tx, retry_task("2026-03-10", "2026-03-17")))
    store.run(lambda tx: timers.fire_due(tx, datetime(2026, 3, 11)))
    moved = retry_task("2026-03-20", "2026-03-27")
    store.run(lambda tx: _put(tx, moved))
    with app.state.store.engine.connect() as connection:
        due = dict(connection.execute(sa.select(event_timer.c.kind, event_timer.c.due)).all())
    assert due == {OPENED: datetime(2026, 3, 10), CLOSED: datetime(2026, 3, 28)}
    assert store.run(lambda tx: timers.fire_due(tx, datetime(2026, 3, 25))) == 0


def test_a_cancelled_task_fires_nothing(app, client):
    store = app.state.store
    store.run(lambda tx: _put(tx, retry_task("2026-03-10", "2026-03-17")))
    cancelled = retry_task("2026-03-10", "2026-03-17") | {"status": "cancelled"}
    store.run(lambda tx: _put(tx, cancelled))
    assert store.run(lambda tx: timers.fire_due(tx, datetime(2026, 4, 1))) == 2  # marked fired
    assert window_events(app) == []


def test_workers_at_once_fire_each_timer_once(app, client):
    """Four workers race for 40 due timers: every one fires, none twice."""
    store = app.state.store
    tasks = [retry_task("2026-03-10", "2026-03-17", f"t{i}") for i in range(20)]
    for task in tasks:
        store.run(lambda tx, t=task: _put(tx, t))
    start = threading.Barrier(4)
    fired: list[int] = []

    def worker() -> None:
        start.wait()
        while True:
            count = store.run(lambda tx: timers.fire_due(tx, datetime(2026, 4, 1), limit=3))
            fired.append(count)
            if not count:
                return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    found = window_events(app)
    assert sum(fired) == 40
    assert sorted((topic, task) for topic, task, _ in found) == sorted(
        (kind, t["id"]) for t in tasks for kind in (OPENED, CLOSED)
    )


def _scenario(client: Any, retry: bool) -> str:
    """A hold-back 38 days ago: its retry window [day 9, day 16] lies in the past. With
    `retry`, a session on day 10 (inside the window)."""
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    hold = submit(client, plan_id, [1, 2, 4, 6], day(2)).json()
    if retry:
        assert submit(client, plan_id, [3, 2, 1, 1, 0], day(10)).status_code == 200
    return str(created(hold, "Task")[0]["id"])


def _subscribe_both(client: Any, receiver: Any) -> None:
    for topic in (OPENED, CLOSED):
        sub_id = subscribe(client, subscription(receiver.url, topic))
        wait_status(client, sub_id, "active", receiver)


def test_a_late_window_is_caught_up_once_across_restarts(client, start_service, receiver):
    """The decisions were stored while no worker ran, and their windows lie in the past: a
    worker that starts fires both, in order, once; another start fires nothing again."""
    first = start_service()  # a worker, for the handshakes only
    _subscribe_both(first, receiver)
    stop(first)
    task_id = _scenario(client, retry=False)
    worker = start_service()
    receiver.wait(lambda: len(receiver.notifications()) == 2)
    # One subscription per topic: each is in order, the two need not be (threads, workers).
    by_topic = {n.parameter("topic").rsplit("/", 1)[1]: n for n in receiver.notifications()}
    assert set(by_topic) == {OPENED, CLOSED}
    assert all(n.foci == [f"http://testserver/fhir/Task/{task_id}"] for n in by_topic.values())
    stamps = {
        topic: next(
            p["valueInstant"] for p in n.status["parameter"][-1]["part"] if p["name"] == "timestamp"
        )
        for topic, n in by_topic.items()
    }
    # When the window opened and closed (the patient's days), not when the worker caught up.
    assert stamps[OPENED].startswith((day(2).date() + timedelta(days=7)).isoformat())
    assert stamps[CLOSED].startswith((day(2).date() + timedelta(days=15)).isoformat())
    stop(worker)
    again = start_service()
    _subscribe_both(again, receiver)  # more passes of a fresh worker, for sure
    assert [n.event_numbers for n in receiver.notifications()] == [[1], [1]]


def test_a_window_with_a_session_inside_does_not_close_as_missed(client, start_service, receiver):
    first = start_service()
    _subscribe_both(first, receiver)
    stop(first)
    _scenario(client, retry=True)
    start_service()
    receiver.wait(lambda: len(receiver.notifications()) >= 1)
    receiver.wait(lambda: not window_events_pending(client.app), timeout=10)  # every timer handled
    topics = [n.parameter("topic").rsplit("/", 1)[1] for n in receiver.notifications()]
    assert topics == [OPENED]


def window_events_pending(app: Any) -> bool:
    with app.state.store.engine.connect() as connection:
        waiting = connection.execute(
            sa.select(sa.func.count()).select_from(event_timer).where(event_timer.c.fired.is_(None))
        ).scalar()
    return bool(waiting)
