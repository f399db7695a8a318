"""Replay: stored sessions decided again against another PlanDefinition version."""

import json

import pytest

from service.cli import main as cli
from service.protocol.codes import EXT_DECISION_PARAMETER
from service.replay import replay
from service.settings import get_settings
from tests.api.scenario import PLAN, day, decision_codes, eligible_patient, enrol, submit


def _publish_version(client, version: str, **overrides: int) -> None:
    plan = client.get(PLAN).json()
    for key in ("id", "meta", "text"):
        plan.pop(key, None)
    plan["version"] = version
    for ext in plan["extension"]:
        if ext["url"] != EXT_DECISION_PARAMETER:
            continue
        parts = {e["url"]: e for e in ext["extension"]}
        name = parts["name"]["valueCode"]
        if name in overrides:
            parts["value"]["valueInteger"] = overrides[name]
    assert client.post("/fhir/PlanDefinition", json=plan).status_code == 201


@pytest.fixture
def history(client) -> str:
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    answers = [
        submit(client, plan_id, [3, 2, 1, 1, 0], day(1)).json(),
        submit(client, plan_id, [3, 4, 5, 5, 4], day(2)).json(),
    ]
    assert [decision_codes(a)[0] for a in answers] == ["continue", "continue"]
    return plan_id


def test_replay_same_version_reproduces_every_decision(client, app, history):
    results = replay(app.state.store, history)
    assert [r.replayed for r in results] == ["continue", "continue"]
    assert not any(r.changed for r in results)


def test_replay_new_threshold_shows_what_changes(client, app, history):
    _publish_version(client, "1.1.0", **{"severe-pain-threshold": 5})
    results = replay(app.state.store, history, "1.1.0")
    assert [r.stored for r in results] == ["continue", "continue"]
    assert [r.replayed for r in results] == ["continue", "hold-back"]
    assert results[1].changed and "R5" in results[1].rules
    assert results[1].plan.endswith("|1.1.0")


def test_replay_command(client, app, history, monkeypatch, capsys, database_url):
    monkeypatch.setenv("CAREPLAN_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        assert cli(["replay", "--care-plan", history, "--json"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [line["replayed"] for line in lines] == ["continue", "continue"]
        assert cli(["replay", "--care-plan", history, "--plan-version", "9.9"]) == 2
    finally:
        get_settings.cache_clear()
