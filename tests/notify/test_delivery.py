"""Notifications reach a real receiver on loopback: in order, signed, with the content asked
for, and through the faults the issue names (receiver down, 500s, too slow, connection
closed, redirect); a subscription whose endpoint keeps failing turns error and resumes with
its backlog; $events gives exactly what was sent."""

from typing import Any

import sqlalchemy as sa

from service.notify.notifications import SIGNATURE_HEADER
from service.store.tables import delivery_state
from tests.notify.conftest import stop
from tests.notify.helpers import subscription
from tests.notify.receiver import Received, Receiver
from tests.notify.test_subscription_api import subscribe, wait_status

PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]}


def care_plan(client: Any) -> str:
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code in (200, 201)
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "title": "change 0",
    }
    created = client.post("/fhir/CarePlan", json=plan)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def change(client: Any, plan_id: str, times: int) -> list[int]:
    """Update the CarePlan `times` times: one careplan-changed event each; their versions."""
    versions = []
    for _ in range(times):
        plan = client.get(f"/fhir/CarePlan/{plan_id}").json()
        plan["title"] = f"change {int(plan['meta']['versionId'])}"
        read_at = {"If-Match": f'W/"{plan["meta"]["versionId"]}"'}
        updated = client.put(f"/fhir/CarePlan/{plan_id}", json=plan, headers=read_at)
        assert updated.status_code == 200, updated.text
        versions.append(int(updated.json()["meta"]["versionId"]))
    return versions


def active_subscription(client: Any, receiver: Receiver, **options: Any) -> str:
    sub_id = subscribe(client, subscription(receiver.url, "careplan-changed", **options))
    wait_status(client, sub_id, "active", receiver)
    return sub_id


def attempts(client: Any, sub_id: str) -> int:
    with client.app.state.store.engine.connect() as connection:
        found = connection.execute(
            sa.select(delivery_state.c.attempts).where(delivery_state.c.sub_id == sub_id)
        ).scalar_one()
    return int(found)


def in_order_once(receiver: Receiver) -> list[int]:
    """The event numbers received, a repeated notification counted once: a repeat carries the
    same numbers as the first delivery (the only duplicates a subscriber may see)."""
    seen: dict[int, Received] = {}
    order = []
    for notification in receiver.notifications():
        for number in notification.event_numbers:
            if number in seen:
                assert notification.event_numbers == seen[number].event_numbers
                assert notification.foci == seen[number].foci
                continue
            seen[number] = notification
            order.append(number)
    return order


def test_changes_arrive_in_order_signed_with_the_subscribers_headers(
    client, receiver, r4_validator
):
    plan_id = care_plan(client)
    sub_id = active_subscription(
        client,
        receiver,
        filters=("patient=Patient/p1",),
        headers=("Authorization: Bearer scheduling-system-token",),
    )
    versions = change(client, plan_id, 5)
    receiver.wait(lambda: len(receiver.event_numbers()) == 5)
    notifications = receiver.notifications()
    assert [n.event_numbers for n in notifications] == [[1], [2], [3], [4], [5]]
    for notification in notifications:
        assert notification.signed, notification.headers.get(SIGNATURE_HEADER.lower())
        assert notification.headers["authorization"] == "Bearer scheduling-system-token"
        assert notification.parameter("status") == "active"
        assert notification.foci == [f"http://testserver/fhir/CarePlan/{plan_id}"]
    # id-only: the focus entry names the version's write, without the resource.
    entries = [n.bundle["entry"][1] for n in notifications]
    assert all("resource" not in e for e in entries)
    assert [e["request"]["method"] for e in entries] == ["PUT"] * 5
    status = client.get(f"/fhir/Subscription/{sub_id}/$status").json()["entry"][0]["resource"]
    since = next(p for p in status["parameter"] if p["name"] == "events-since-subscription-start")
    assert since["valueString"] == "5"
    assert versions == [2, 3, 4, 5, 6]
    if r4_validator is not None:  # handshake and id-only notifications are valid R4
        for notification in receiver.received:
            assert r4_validator.validate(notification.bundle) == []


def test_full_resource_carries_the_version_the_event_is_about(client, receiver, r4_validator):
    plan_id = care_plan(client)
    active_subscription(client, receiver, content="full-resource", max_count=3)
    versions = change(client, plan_id, 3)
    receiver.wait(lambda: len(receiver.event_numbers()) == 3)
    carried = [
        e["resource"]["meta"]["versionId"]
        for n in receiver.notifications()
        for e in n.bundle["entry"][1:]
    ]
    assert carried == [str(v) for v in versions]  # not three times today's version
    if r4_validator is not None:
        for notification in receiver.received:
            assert r4_validator.validate(notification.bundle) == []


def test_empty_content_names_no_resource(client, receiver, r4_validator):
    plan_id = care_plan(client)
    active_subscription(client, receiver, content="empty")
    change(client, plan_id, 1)
    receiver.wait(lambda: receiver.notifications())
    notification = receiver.notifications()[0]
    assert len(notification.bundle["entry"]) == 1
    assert notification.foci == [] and notification.parameter("topic") is None
    assert notification.event_numbers == [1]
    assert r4_validator is None or r4_validator.validate(notification.bundle) == []


def test_filters_keep_other_patients_events_away(client, receiver):
    plan_id = care_plan(client)
    active_subscription(client, receiver, filters=("patient=Patient/someone-else",))
    mine = active_subscription(client, receiver, filters=("CarePlan?patient=Patient/p1",))
    change(client, plan_id, 2)
    receiver.wait(lambda: len(receiver.event_numbers()) == 2)
    subscriptions = {n.parameter("subscription")["reference"] for n in receiver.notifications()}
    assert subscriptions == {f"http://testserver/fhir/Subscription/{mine}"}


def test_a_receiver_down_for_a_while_gets_every_event_in_order(client, receiver):
    plan_id = care_plan(client)
    sub_id = active_subscription(client, receiver)
    receiver.stop()
    change(client, plan_id, 6)
    receiver.wait(lambda: attempts(client, sub_id) >= 3)  # connection refused, retried
    receiver.start()  # the same port
    receiver.wait(lambda: len(receiver.event_numbers()) >= 6)
    assert receiver.event_numbers() == [1, 2, 3, 4, 5, 6]  # none lost, no gap, no repeat
    assert all(n.signed for n in receiver.received)


def test_500s_then_success(client, receiver):
    plan_id = care_plan(client)
    active_subscription(client, receiver)
    receiver.answer = 500
    change(client, plan_id, 3)
    receiver.wait(lambda: receiver.attempts >= 5)
    assert receiver.notifications() == []
    receiver.answer = 200
    receiver.wait(lambda: len(receiver.event_numbers()) == 3)
    assert receiver.event_numbers() == [1, 2, 3]


def test_a_receiver_slower_than_the_timeout_is_tried_again(client, receiver):
    plan_id = care_plan(client)
    sub_id = active_subscription(client, receiver, timeout=1)
    receiver.answer = ("slow", 1.5)  # answers, but after the subscription's timeout
    change(client, plan_id, 2)
    receiver.wait(lambda: attempts(client, sub_id) >= 2)
    receiver.answer = 200
    receiver.wait(lambda: in_order_once(receiver) == [1, 2])
    # The late answers were received by the endpoint: repeated, with their numbers.
    assert len(receiver.notifications()) > 2


def test_a_closed_connection_is_tried_again(client, receiver):
    plan_id = care_plan(client)
    sub_id = active_subscription(client, receiver)
    receiver.answer = "close"
    change(client, plan_id, 2)
    receiver.wait(lambda: attempts(client, sub_id) >= 2)
    receiver.answer = 200
    receiver.wait(lambda: len(receiver.event_numbers()) == 2)
    assert receiver.event_numbers() == [1, 2]


def test_a_redirect_is_not_followed_and_the_subscription_gives_up(start_service, receiver):
    elsewhere = Receiver(receiver.secret).start()
    try:
        client = start_service(delivery_give_up_seconds=1.0)
        plan_id = care_plan(client)
        sub_id = active_subscription(client, receiver)
        receiver.answer = "redirect"  # to the same server's /elsewhere: nobody follows it
        change(client, plan_id, 1)
        failed = wait_status(client, sub_id, "error", receiver)
        assert "redirects are not followed" in failed["error"]
        assert receiver.notifications() == [] and elsewhere.attempts == 0
    finally:
        elsewhere.stop()


def test_an_endpoint_failing_longer_than_the_give_up_time_is_error_then_resumes(
    start_service, receiver
):
    client = start_service(delivery_give_up_seconds=1.0)
    plan_id = care_plan(client)
    sub_id = active_subscription(client, receiver)
    receiver.stop()
    change(client, plan_id, 2)
    failed = wait_status(client, sub_id, "error", receiver)
    assert "failing since" in failed["error"]
    change(client, plan_id, 2)  # counted while in error, kept for later
    receiver.start()
    again = {k: v for k, v in failed.items() if k not in ("meta", "error")} | {
        "status": "requested"
    }
    assert client.put(f"/fhir/Subscription/{sub_id}", json=again).status_code == 200
    receiver.wait(lambda: len(receiver.event_numbers()) == 4)
    assert receiver.event_numbers() == [1, 2, 3, 4]
    assert (
        receiver.notifications("handshake")[-1].parameter("events-since-subscription-start") == "4"
    )


def test_a_subscription_past_its_end_turns_off_and_sends_nothing(client, receiver):
    plan_id = care_plan(client)
    sub_id = active_subscription(client, receiver)
    current = client.get(f"/fhir/Subscription/{sub_id}").json()
    ended = {k: v for k, v in current.items() if k != "meta"} | {"end": "2020-01-01T00:00:00Z"}
    assert client.put(f"/fhir/Subscription/{sub_id}", json=ended).status_code == 200
    change(client, plan_id, 1)
    wait_status(client, sub_id, "off", receiver)
    assert receiver.notifications() == []


def test_heartbeats_while_nothing_happens(client, receiver):
    sub_id = active_subscription(client, receiver, heartbeat=1)
    receiver.wait(lambda: len(receiver.notifications("heartbeat")) >= 2)
    beat = receiver.notifications("heartbeat")[0]
    assert beat.signed and beat.event_numbers == []
    assert beat.parameter("events-since-subscription-start") == "0"
    assert beat.parameter("subscription")["reference"].endswith(sub_id)


def test_events_returns_exactly_what_was_sent(client, receiver):
    plan_id = care_plan(client)
    sub_id = active_subscription(client, receiver, content="full-resource", max_count=2)
    change(client, plan_id, 5)
    receiver.wait(lambda: len(receiver.event_numbers()) == 5)

    def events(bundle: dict[str, Any]) -> list[tuple[Any, ...]]:
        status = bundle["entry"][0]["resource"]["parameter"]
        parts = [p["part"] for p in status if p["name"] == "notification-event"]
        return [tuple(sorted((q["name"], str(q)) for q in part)) for part in parts]

    sent = [e for n in receiver.notifications() for e in events(n.bundle)]
    sent_resources = [
        e["resource"] for n in receiver.notifications() for e in n.bundle["entry"][1:]
    ]
    replay = client.get(f"/fhir/Subscription/{sub_id}/$events").json()
    assert replay["type"] == "history"
    assert events(replay) == sent
    assert [e["resource"] for e in replay["entry"][1:]] == sent_resources
    # From an event number, with other content.
    tail = client.get(
        f"/fhir/Subscription/{sub_id}/$events",
        params={"eventsSinceNumber": "4", "content": "id-only"},
    ).json()
    assert events(tail) == sent[3:]
    assert all("resource" not in e for e in tail["entry"][1:])
    posted = client.post(
        f"/fhir/Subscription/{sub_id}/$events",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "eventsSinceNumber", "valueString": "2"},
                {"name": "eventsUntilNumber", "valueString": "3"},
            ],
        },
    ).json()
    assert events(posted) == sent[1:3]
    bad = client.get(f"/fhir/Subscription/{sub_id}/$events", params={"eventsSinceNumber": "x"})
    assert bad.status_code == 400


def test_an_endpoint_no_longer_allowed_gets_nothing(start_service, receiver):
    first = start_service()
    plan_id = care_plan(first)
    sub_id = active_subscription(first, receiver)
    stop(first)
    # The operator narrows the allow-list; the stored subscription is not called any more.
    client = start_service(subscription_endpoints="https://elsewhere.example/hooks/")
    change(client, plan_id, 1)
    failed = wait_status(client, sub_id, "error", receiver)
    assert "not allowed" in failed["error"]
    assert receiver.notifications() == []


def test_a_deleted_subscription_gets_nothing_more(client, receiver):
    plan_id = care_plan(client)
    gone = active_subscription(client, receiver)
    kept = active_subscription(client, receiver, filters=("patient=Patient/p1",))
    assert client.delete(f"/fhir/Subscription/{gone}").status_code == 204
    change(client, plan_id, 2)
    receiver.wait(lambda: len(receiver.event_numbers()) == 2)
    subscriptions = {n.parameter("subscription")["reference"] for n in receiver.notifications()}
    assert subscriptions == {f"http://testserver/fhir/Subscription/{kept}"}
    assert client.get(f"/fhir/Subscription/{gone}/$status").status_code == 410
