"""The outbox: an event row is written in the transaction of the change that caused it (a
decision, a CarePlan change, a review request), so a committed change has its event and a
rolled-back one has none; the dispatcher numbers events per subscription."""

from typing import Any

import pytest
import sqlalchemy as sa

from service.notify import outbox
from service.settings import Settings
from service.store.repository import Tx
from service.store.tables import event_timer, outbox_event, subscription_event
from service.usecases import crud
from tests.api.helpers import store_snapshot
from tests.api.scenario import created, day, eligible_patient, enrol, part, submit
from tests.notify.helpers import subscription
from tests.notify.test_subscription_api import subscribe


@pytest.fixture
def settings(database_url: str, receiver: Any) -> Settings:
    """No worker: the outbox rows stay as the use cases wrote them."""
    return Settings(
        database_url=database_url,
        db_connect_retries=0,
        delivery_worker=False,
        subscription_endpoints=receiver.prefix,
    )


def rows(app: Any, table: sa.Table) -> list[Any]:
    with app.state.store.engine.connect() as connection:
        return list(connection.execute(sa.select(table)).all())


def events(app: Any) -> list[tuple[str, str, str]]:
    found = sorted(rows(app, outbox_event), key=lambda r: r.id)
    return [(r.topic, r.focus_type, r.focus_id) for r in found]


PLAN = {
    "resourceType": "CarePlan",
    "status": "active",
    "intent": "plan",
    "subject": {"reference": "Patient/p1"},
}


class Boom(Exception):
    pass


def test_a_committed_change_has_its_event_and_a_rolled_back_one_none(app, client):
    store = app.state.store

    def fails(tx: Tx) -> None:
        crud.create_in(tx, dict(PLAN), caller=None)
        raise Boom()

    before = store_snapshot(app)
    with pytest.raises(Boom):
        store.run(fails)
    assert events(app) == [] and store_snapshot(app) == before
    stored, _ = store.run(lambda tx: crud.create_in(tx, dict(PLAN), caller=None))
    assert events(app) == [("careplan-changed", "CarePlan", stored.id)]
    found = rows(app, outbox_event)[0]
    assert (found.patient_id, found.care_plan_id, found.focus_version) == ("p1", stored.id, 1)


def test_a_decision_writes_its_events_with_it(client, app):
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    assert events(app)[-1] == ("careplan-changed", "CarePlan", plan_id)
    answer = submit(client, plan_id, [1, 2, 4, 8], day(2)).json()  # severe: hold and review
    decision = part(answer, "decision")["id"]
    review = created(answer, "ServiceRequest")[0]["id"]
    task = created(answer, "Task")[0]["id"]
    assert events(app)[-3:] == [
        ("decision-made", "GuidanceResponse", decision),
        ("careplan-changed", "CarePlan", plan_id),
        ("review-requested", "ServiceRequest", review),
    ]
    kinds = {(r.task_id, r.kind) for r in rows(app, event_timer)}
    assert kinds == {(task, "retry-window-opened"), (task, "retry-window-closed")}
    # A resubmission stores nothing new, so it has no events either.
    count = len(events(app))
    submit(client, plan_id, [1, 2, 4, 8], day(2))
    assert len(events(app)) == count


def test_the_dispatcher_numbers_events_per_subscription(client, app, receiver):
    store = app.state.store
    store.run(lambda tx: crud.create_in(tx, dict(PLAN), caller=None))  # before any subscription
    mine = subscribe(client, subscription(receiver.url, "careplan-changed"))
    other = subscribe(
        client, subscription(receiver.url, "careplan-changed", filters=("patient=p2",))
    )
    plans = [
        store.run(lambda tx: crud.create_in(tx, dict(PLAN), caller=None))[0].id for _ in range(3)
    ]
    assert store.run(outbox.dispatch) == 4
    numbered = sorted((r.sub_id, r.event_number) for r in rows(app, subscription_event))
    assert numbered == [(mine, 1), (mine, 2), (mine, 3)]
    kept = sorted(rows(app, outbox_event), key=lambda r: r.id)
    assert [r.focus_id for r in kept] == plans  # the one nobody wanted is gone
    assert all(r.dispatched for r in kept)
    assert store.run(outbox.dispatch) == 0
    assert other
