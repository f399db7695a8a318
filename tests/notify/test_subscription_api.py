"""Subscription over HTTP: create answers requested and the handshake activates it; what is not
supported is a 422 naming it; the signing secret is never read back; $status; the
CapabilityStatement lists the topics; a patient-limited caller subscribes to its own patient."""

from types import SimpleNamespace
from typing import Any

import pytest

from service.api.subscriptions import limited_to
from service.auth.scopes import ScopeSet
from service.auth.verify import AccessContext
from service.notify.subscription import PROFILE, SECRET_EXTENSION, TOPIC_EXTENSION
from service.notify.topics import TOPICS
from service.usecases import subscriptions
from tests.api.helpers import store_snapshot
from tests.notify.helpers import SECRET, subscription
from tests.notify.receiver import Receiver


def subscribe(client: Any, body: dict[str, Any]) -> str:
    created = client.post("/fhir/Subscription", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def wait_status(client: Any, sub_id: str, status: str, receiver: Receiver) -> dict[str, Any]:
    def reached() -> bool:
        return client.get(f"/fhir/Subscription/{sub_id}").json()["status"] == status

    receiver.wait(reached)
    return dict(client.get(f"/fhir/Subscription/{sub_id}").json())


def test_create_answers_requested_and_the_handshake_makes_it_active(client, receiver):
    created = client.post(
        "/fhir/Subscription", json=subscription(receiver.url, filters=("patient=Patient/p1",))
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "requested"
    assert created.headers["location"].endswith("/_history/1")
    receiver.wait(lambda: receiver.notifications("handshake"))
    handshake = receiver.notifications("handshake")[0]
    assert handshake.signed
    assert handshake.headers["content-type"] == "application/fhir+json"
    assert handshake.bundle["type"] == "history"
    assert handshake.parameter("status") == "requested"
    assert handshake.parameter("events-since-subscription-start") == "0"
    assert handshake.parameter("subscription") == {
        "reference": f"http://testserver/fhir/Subscription/{body['id']}"
    }
    active = wait_status(client, body["id"], "active", receiver)
    assert active["meta"]["versionId"] == "2"


def test_the_signing_secret_is_never_read_back(client, receiver):
    sub_id = subscribe(client, subscription(receiver.url))
    wait_status(client, sub_id, "active", receiver)
    answers = [
        client.get(f"/fhir/Subscription/{sub_id}"),
        client.get(f"/fhir/Subscription/{sub_id}/_history/1"),
        client.get(f"/fhir/Subscription/{sub_id}/_history"),
        client.get("/fhir/Subscription"),
        client.get("/fhir/_history"),
        client.get(f"/fhir/Subscription/{sub_id}/$status"),
        client.get(f"/fhir/Subscription/{sub_id}/$events"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text and SECRET_EXTENSION not in answer.text
    assert all(SECRET.encode() not in r.body for r in receiver.received)


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`body` with the element at a dotted path set (or removed, for None)."""
    import copy

    changed = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = changed
    for step in parents:
        node = node[int(step)] if step.isdigit() else node[step]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return changed


@pytest.mark.parametrize(
    ("path", "value", "expression", "named"),
    [
        (
            "criteria",
            "https://example.org/SubscriptionTopic/admission",
            "Subscription.criteria",
            "topic",
        ),
        ("criteria", "Observation?code=72514-3", "Subscription.criteria", "is not supported"),
        (
            "_criteria",
            {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                        "backport-filter-criteria",
                        "valueString": "GuidanceResponse?status=success",
                    }
                ]
            },
            "Subscription.criteria.extension",
            "cannot be filtered by 'status'",
        ),
        ("channel.type", "websocket", "Subscription.channel.type", "only rest-hook"),
        ("channel.payload", "application/fhir+xml", "Subscription.channel.payload", "payload"),
        (
            "channel._payload.extension.0.valueCode",
            "everything",
            "Subscription.channel.payload.extension",
            "'everything' is not supported",
        ),
        ("channel._payload", None, "Subscription.channel.payload.extension", "content None"),
        (
            "channel.endpoint",
            "https://intranet.hospital.example/hook",
            "Subscription.channel.endpoint",
            "is not allowed",
        ),
        (
            "channel.header",
            ["Content-Type: text/plain"],
            "Subscription.channel.header[0]",
            "set by",
        ),
        ("channel.header", ["no colon"], "Subscription.channel.header[0]", "Name: value"),
        ("channel.extension", None, "Subscription.channel.extension", "signing secret"),
        (
            "channel.extension",
            [{"url": SECRET_EXTENSION, "valueString": "short"}],
            "Subscription.channel.extension[0]",
            "32-255 characters",
        ),
    ],
)
def test_what_is_not_supported_is_a_422_naming_it(
    client, app, receiver, path, value, expression, named
):
    body = _with(subscription(receiver.url), path, value)
    before = store_snapshot(app)
    answer = client.post("/fhir/Subscription", json=body)
    assert answer.status_code == 422, answer.text
    issues = answer.json()["issue"]
    assert any(expression in i.get("expression", []) and named in i["diagnostics"] for i in issues)
    assert store_snapshot(app) == before
    assert receiver.attempts == 0


def test_an_endpoint_on_another_port_of_the_allowed_host_is_refused(client, receiver):
    other = receiver.url.replace(f":{receiver.port}/", f":{receiver.port + 1}/")
    answer = client.post("/fhir/Subscription", json=subscription(other))
    assert answer.status_code == 422
    assert "CAREPLAN_SUBSCRIPTION_ENDPOINTS" in answer.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("name", "url", "value", "named"),
    [
        ("timeout", "backport-timeout", {"valueUnsignedInt": 500}, "timeout 500"),
        ("maxCount", "backport-max-count", {"valuePositiveInt": 1000}, "maxCount 1000"),
    ],
)
def test_channel_limits_are_named(client, receiver, name, url, value, named):
    body = subscription(receiver.url)
    extension = {"url": f"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/{url}"}
    body["channel"]["extension"].append(extension | value)
    answer = client.post("/fhir/Subscription", json=body)
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["issue"][0]["diagnostics"]


def test_subscriptions_are_not_written_inside_a_transaction(client, receiver):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": subscription(receiver.url),
                "request": {"method": "POST", "url": "Subscription"},
            }
        ],
    }
    answer = client.post("/fhir", json=bundle)
    assert answer.status_code == 422
    assert "POST /fhir/Subscription" in answer.json()["issue"][0]["diagnostics"]


def test_a_failed_handshake_is_error_and_requesting_again_recovers(client, receiver):
    receiver.answer = 500
    sub_id = subscribe(client, subscription(receiver.url))
    failed = wait_status(client, sub_id, "error", receiver)
    assert "handshake failed: HTTP 500" in failed["error"]
    status = client.get(f"/fhir/Subscription/{sub_id}/$status").json()
    parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert parameters["status"]["valueCode"] == "error"
    assert parameters["type"]["valueCode"] == "query-status"
    assert "HTTP 500" in parameters["error"]["valueCodeableConcept"]["text"]
    # The subscriber fixes its endpoint and asks again (the secret it gave first stays).
    receiver.answer = 200
    again = {k: v for k, v in failed.items() if k not in ("meta", "error")}
    again["status"] = "requested"
    put = client.put(f"/fhir/Subscription/{sub_id}", json=again)
    assert put.status_code == 200, put.text
    assert put.json()["status"] == "requested" and "error" not in put.json()
    wait_status(client, sub_id, "active", receiver)
    assert all(r.signed for r in receiver.received)


def test_a_new_secret_replaces_the_old_one(client, receiver):
    sub_id = subscribe(client, subscription(receiver.url))
    current = wait_status(client, sub_id, "active", receiver)
    receiver.secret = "another-secret-of-at-least-thirty-two-chars"
    body = subscription(receiver.url, secret=receiver.secret, status="requested")
    assert client.put(f"/fhir/Subscription/{sub_id}", json=body | {"id": sub_id}).status_code == 200
    receiver.wait(lambda: len(receiver.notifications("handshake")) == 2)
    assert receiver.notifications("handshake")[1].signed
    assert current["status"] == "active"


def test_status_of_all_subscriptions_and_by_id(client, receiver):
    first = subscribe(client, subscription(receiver.url))
    second = subscribe(client, subscription(receiver.url, status="off"))
    everything = client.get("/fhir/Subscription/$status").json()
    assert everything["type"] == "searchset" and everything["total"] == 2
    one = client.get(f"/fhir/Subscription/$status?id={second}").json()
    reference = one["entry"][0]["resource"]["parameter"][0]["valueReference"]["reference"]
    assert reference.endswith(f"/Subscription/{second}")
    assert client.get(f"/fhir/Subscription/{first}/$status").status_code == 200
    assert client.get("/fhir/Subscription/nope/$status").status_code == 404


def test_an_off_subscription_gets_no_handshake(client, receiver):
    sub_id = subscribe(client, subscription(receiver.url, status="off"))
    assert client.get(f"/fhir/Subscription/{sub_id}").json()["status"] == "off"
    other = subscribe(client, subscription(receiver.url))
    wait_status(client, other, "active", receiver)
    assert len(receiver.notifications("handshake")) == 1  # the second one's only


def test_the_capability_statement_lists_the_topics(client):
    statement = client.get("/fhir/metadata").json()
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription")
    listed = {e["valueCanonical"] for e in entry["extension"] if e["url"] == TOPIC_EXTENSION}
    assert listed == {t.url for t in TOPICS.values()}
    assert entry["supportedProfile"] == [PROFILE]
    assert {o["name"] for o in entry["operation"]} == {"status", "events"}
    assert statement["instantiates"] == [subscriptions.BACKPORT_SERVER]


# --- a patient-limited caller -------------------------------------------------------------------


def _request(scopes: str, patient: str | None) -> Any:
    access = AccessContext("https://issuer", "app", ScopeSet.parse(scopes), patient, None, 0)
    return SimpleNamespace(state=SimpleNamespace(access=access))


def test_who_is_limited_to_a_patient() -> None:
    open_service = SimpleNamespace(state=SimpleNamespace())
    assert limited_to(open_service, "c") is None  # type: ignore[arg-type]
    assert limited_to(_request("system/Subscription.crus", None), "c") is None
    assert limited_to(_request("patient/Subscription.c", "p1"), "c") == "p1"
    assert limited_to(_request("patient/*.cruds user/Patient.r", "p1"), "c") == "p1"
    assert limited_to(_request("patient/Subscription.c", None), "c") == ""  # nobody


def test_a_patient_token_subscribes_only_to_its_own_patient(receiver) -> None:
    rules = subscriptions.Rules((receiver.prefix,), "https://fhir.example/fhir")

    def spec(*filters: str) -> Any:
        return subscriptions.checked(subscription(receiver.url, filters=filters), rules)

    own = spec("patient=Patient/p1")
    subscriptions.check_compartment(own, "p1")
    subscriptions.check_compartment(spec("patient=p1,p2", "patient=p1"), "p1")
    subscriptions.check_compartment(spec(), None)  # not limited: anything
    for filters in [(), ("patient=Patient/p2",), ("patient=p1,p2",), ("decision=hold-back",)]:
        with pytest.raises(Exception, match="patient=Patient/p1") as refused:
            subscriptions.check_compartment(spec(*filters), "p1")
        assert refused.value.status == 403  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="patient=Patient/"):
        subscriptions.check_compartment(own, "")
    assert SECRET  # the helper's secret is what the builder sends
