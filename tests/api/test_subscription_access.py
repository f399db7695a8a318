"""Subscriptions under authorization (issue 21, item 6): `$status` and `$events` need the
Subscription read scope, and a `patient/` token sees only the subscriptions filtered to its
own patient; each call leaves an AuditEvent."""

from typing import Any

import pytest

from service.settings import Settings
from tests.api.conftest import as_ehr
from tests.api.helpers import audit_events
from tests.notify.helpers import subscription

ENDPOINTS = "https://receiver.example.org/hooks/"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        db_connect_retries=0,
        auth="required",
        subscription_endpoints=ENDPOINTS,
        delivery_worker=False,  # no handshake: the endpoint is not there
    )


def _subscribe(client: Any, patient_id: str) -> str:
    body = subscription(ENDPOINTS + patient_id, filters=(f"patient=Patient/{patient_id}",))
    created = client.post("/fhir/Subscription", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_a_patient_token_sees_only_its_own_subscriptions(ehr_client: Any, ehr_app: Any) -> None:
    for patient_id in ("p1", "p2"):
        patient = {"resourceType": "Patient", "id": patient_id}
        assert ehr_client.put(f"/fhir/Patient/{patient_id}", json=patient).status_code == 201
    own, other = _subscribe(ehr_client, "p1"), _subscribe(ehr_client, "p2")
    p1 = as_ehr("patient/Subscription.rs", patient="p1")

    assert ehr_client.get(f"/fhir/Subscription/{own}/$status", headers=p1).status_code == 200
    assert ehr_client.get(f"/fhir/Subscription/{other}/$status", headers=p1).status_code == 404
    assert ehr_client.get(f"/fhir/Subscription/{other}/$events", headers=p1).status_code == 404
    listed = ehr_client.get("/fhir/Subscription/$status", headers=p1).json()
    subscriptions = [e["resource"]["parameter"][0]["valueReference"] for e in listed["entry"]]
    assert [s["reference"].rsplit("/", 1)[-1] for s in subscriptions] == [own]
    # A system token sees both.
    every = ehr_client.get("/fhir/Subscription/$status").json()
    assert every["total"] == 2

    before = len(audit_events(ehr_app))
    no_scope = as_ehr("patient/Observation.rs", patient="p1")
    refused = ehr_client.get(f"/fhir/Subscription/{own}/$status", headers=no_scope)
    assert refused.status_code == 403
    [event] = audit_events(ehr_app)[before:]
    assert event["outcome"] == "4"


def test_full_resource_content_needs_the_read_scope_of_the_focus(
    ehr_client: Any, ehr_app: Any
) -> None:
    """decision-made notifications with full-resource carry GuidanceResponses: Subscription
    scopes alone must not read them (403 at create, update and $events), id-only is fine."""
    token = ehr_client.tokens.token("system/Subscription.cruds")
    only_subscriptions = {"authorization": f"Bearer {token}"}
    body = subscription(ENDPOINTS + "p1", filters=("patient=Patient/p1",), content="full-resource")
    refused = ehr_client.post("/fhir/Subscription", json=body, headers=only_subscriptions)
    assert refused.status_code == 403, refused.text
    id_only = subscription(ENDPOINTS + "p1", filters=("patient=Patient/p1",))
    created = ehr_client.post("/fhir/Subscription", json=id_only, headers=only_subscriptions)
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    events = f"/fhir/Subscription/{sub_id}/$events?content=full-resource"
    assert ehr_client.get(events, headers=only_subscriptions).status_code == 403
    assert ehr_client.get(events).status_code == 200  # system/*.cruds reads GuidanceResponses
