"""A scheduling system that polls learns the same facts as one that subscribes:
`_history?_since=` and `_lastUpdated` searches on GuidanceResponse, Task and CarePlan return
the resources the notifications named."""

from datetime import UTC, datetime
from typing import Any

from tests.api.scenario import created, day, eligible_patient, enrol, part, submit
from tests.notify.helpers import subscription
from tests.notify.test_subscription_api import subscribe, wait_status


def _ids(bundle: dict[str, Any], resource_type: str) -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == resource_type
    }


def test_polling_finds_what_the_notifications_carried(client, receiver):
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    for topic in ("decision-made", "careplan-changed", "review-requested"):
        sub_id = subscribe(client, subscription(receiver.url, topic, filters=("patient=p1",)))
        wait_status(client, sub_id, "active", receiver)
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    answers = [
        submit(client, plan_id, [3, 2, 1, 1, 0], day(1)).json(),
        submit(client, plan_id, [1, 2, 4, 8], day(2)).json(),  # hold-back, review, retry Task
    ]
    receiver.wait(lambda: len(receiver.event_numbers()) >= 5)
    notified: dict[str, set[str]] = {}
    for notification in receiver.notifications():
        for focus in notification.foci:
            resource_type, rid = focus.split("/")[-2:]
            notified.setdefault(resource_type, set()).add(rid)
    decisions = {part(a, "decision")["id"] for a in answers}
    assert notified["GuidanceResponse"] == decisions
    assert notified["CarePlan"] == {plan_id}
    assert notified["ServiceRequest"] == {created(answers[1], "ServiceRequest")[0]["id"]}

    history = client.get("/fhir/_history", params={"_since": since, "_count": "100"}).json()
    for resource_type, ids in notified.items():
        assert ids <= _ids(history, resource_type), resource_type
    for resource_type in ("GuidanceResponse", "CarePlan", "ServiceRequest"):
        found = client.get(f"/fhir/{resource_type}", params={"_lastUpdated": f"ge{since}"})
        assert _ids(found.json(), resource_type) == notified[resource_type], resource_type
    # The retry window a hold opened is a Task: a poller finds it the same way.
    tasks = client.get("/fhir/Task", params={"_lastUpdated": f"ge{since}"}).json()
    assert _ids(tasks, "Task") == {created(answers[1], "Task")[0]["id"]}
