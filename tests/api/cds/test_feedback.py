"""Feedback: each accepted or overridden card stored once as a Task, found by search and
counted by service and outcome in the metrics."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from service import observability
from service.protocol.codes import CANONICAL_BASE
from tests.api.cds.helpers import ORDER_SIGN, PATIENT_VIEW, outcome
from tests.api.helpers import store_snapshot
from tests.support.cds_shapes import check

EXAMPLES = Path(__file__).resolve().parents[2] / "support" / "cds_hooks" / "examples"
SYSTEM = f"{CANONICAL_BASE}/sid/cds-card"


def example(name: str) -> dict[str, Any]:
    document = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    assert check("CDSHooksFeedback", document) == []
    return dict(document)


def counted(service: str, result: str) -> float:
    value = observability.METRICS.registry.get_sample_value(
        "careplan_cds_feedback_total", {"service": service, "outcome": result}
    )
    return value or 0.0


def search(client: Any, query: str) -> list[dict[str, Any]]:
    answer = client.get(f"/fhir/Task?{query}")
    assert answer.status_code == 200, answer.text
    return [entry["resource"] for entry in answer.json().get("entry", [])]


def test_the_specifications_feedback_examples_are_stored_as_tasks(client) -> None:
    accepted_before = counted(ORDER_SIGN, "accepted")
    overridden_before = counted(ORDER_SIGN, "overridden")
    for name in ("feedback-accepted", "feedback-overridden", "feedback-overridden-with-reason"):
        answer = client.post(f"/cds-services/{ORDER_SIGN}/feedback", json=example(name))
        assert answer.status_code == 200, answer.text
    tasks = search(client, f"identifier={SYSTEM}/{ORDER_SIGN}|")
    assert len(tasks) == 3
    by_card = {t["identifier"][0]["value"]: t for t in tasks}
    accepted = by_card["4e0a3a1e-3283-4575-ab82-028d55fe2719"]
    assert accepted["status"] == "accepted" and accepted["intent"] == "proposal"
    assert accepted["input"][0]["valueString"] == "e56e1945-20b3-4393-8503-a1a20fd73152"
    assert accepted["authoredOn"] == "2021-12-11T10:05:31Z"
    plain = by_card["f6b95768-b1c8-40dc-8385-bf3504b82ffb"]
    assert plain["status"] == "rejected" and "statusReason" not in plain
    reasoned = by_card["9368d37b-283f-44a0-93ea-547cebab93ed"]
    assert reasoned["statusReason"]["coding"] == [
        {"code": "d7ecf885", "system": "https://example.com/cds-hooks/override-reason-system"}
    ]
    assert reasoned["note"] == [{"text": "A comment entered by the clinician."}]
    # Counted by service and outcome; searchable by outcome.
    assert counted(ORDER_SIGN, "accepted") == accepted_before + 1
    assert counted(ORDER_SIGN, "overridden") == overridden_before + 2
    overridden = client.get(
        f"/fhir/Task?identifier={SYSTEM}/{ORDER_SIGN}|&status=rejected&_summary=count"
    ).json()
    assert overridden["total"] == 2
    assert (
        search(client, "identifier=9368d37b-283f-44a0-93ea-547cebab93ed")[0]["id"] == reasoned["id"]
    )
    assert search(client, f"identifier={SYSTEM}/{PATIENT_VIEW}|") == []


def test_the_same_feedback_twice_is_stored_and_counted_once(client, app) -> None:
    body = example("feedback-accepted")
    assert client.post(f"/cds-services/{PATIENT_VIEW}/feedback", json=body).status_code == 200
    before, count = store_snapshot(app), counted(PATIENT_VIEW, "accepted")
    assert client.post(f"/cds-services/{PATIENT_VIEW}/feedback", json=body).status_code == 200
    assert store_snapshot(app) == before
    assert counted(PATIENT_VIEW, "accepted") == count
    # The same card on another service is another card.
    assert client.post(f"/cds-services/{ORDER_SIGN}/feedback", json=body).status_code == 200
    assert store_snapshot(app) != before


def _entry(**change: Any) -> dict[str, Any]:
    body = example("feedback-overridden-with-reason")
    entry = body["feedback"][0]
    for key, value in change.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return body


BAD = [
    ("no feedback list", {"feedback": []}, "feedback"),
    ("not a list", {"feedback": {"card": "x"}}, "feedback"),
    ("card not a uuid", _entry(card="card-1"), "feedback[0].card"),
    ("no outcome", _entry(outcome=None), "feedback[0].outcome"),
    ("unknown outcome", _entry(outcome="ignored"), "feedback[0].outcome"),
    ("no timestamp", _entry(outcomeTimestamp=None), "feedback[0].outcomeTimestamp"),
    (
        "accepted without suggestions",
        _entry(outcome="accepted", overrideReason=None),
        "feedback[0].acceptedSuggestions",
    ),
    (
        "suggestion id not a uuid",
        _entry(outcome="accepted", acceptedSuggestions=[{"id": "s1"}]),
        "feedback[0].acceptedSuggestions[0].id",
    ),
    ("empty override reason", _entry(overrideReason={}), "feedback[0].overrideReason"),
    (
        "override reason not a Coding",
        _entry(overrideReason={"reason": "too busy"}),
        "feedback[0].overrideReason.reason",
    ),
]


@pytest.mark.parametrize(("body", "where"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_feedback_is_400_and_stores_nothing(client, app, body, where) -> None:
    before = store_snapshot(app)
    issues = outcome(client.post(f"/cds-services/{ORDER_SIGN}/feedback", json=body), 400)
    assert where in issues[0].get("expression", []), issues
    assert store_snapshot(app) == before


def test_a_timestamp_that_is_not_an_instant_is_400(client, app) -> None:
    body = copy.deepcopy(example("feedback-overridden"))
    body["feedback"][0]["outcomeTimestamp"] = "last tuesday"
    before = store_snapshot(app)
    issues = outcome(client.post(f"/cds-services/{ORDER_SIGN}/feedback", json=body), 400)
    assert issues[0]["diagnostics"].startswith("feedback[0]:")
    assert store_snapshot(app) == before
