"""Replay: stored sessions decided again against another PlanDefinition version."""

import json

import pytest

from service.cli import main as cli
from service.protocol.codes import EXT_DECISION_PARAMETER
from service.settings import get_settings
from service.usecases.replay import replay
from tests.api.helpers import if_match
from tests.api.scenario import PLAN, day, decision_codes, eligible_patient, enrol, put, submit
from tests.protocol import builders as b


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
    assert [r.replayed.code for r in results] == ["continue", "continue"]
    assert [r.replayed for r in results] == [r.stored for r in results]
    assert not any(r.changed for r in results)


def test_replay_new_threshold_shows_what_changes(client, app, history):
    _publish_version(client, "1.0.1", **{"severe-pain-threshold": 5})
    results = replay(app.state.store, history, "1.0.1")
    assert [r.stored.code for r in results] == ["continue", "continue"]
    assert [r.replayed.code for r in results] == ["continue", "hold-back"]
    assert results[1].changed and "R5" in results[1].replayed.rules
    assert results[1].stored.plan.endswith("|1.0.0")
    assert results[1].replayed.plan.endswith("|1.0.1")
    assert results[1].replayed.retry_window is not None


def test_replay_flags_other_rules_under_the_same_decision(client, app):
    """A version that adds a clinician review (R6) to a hold-back it also makes is a change."""
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    submit(client, plan_id, [1, 2, 4, 6], day(1))
    late = submit(client, plan_id, [1, 2, 4, 6], day(39))  # a new hold, 38 days later
    assert decision_codes(late.json())[0] == "hold-back", late.text
    _publish_version(client, "2.0.0", **{"repeat-holdback-window-days": 60})
    last = replay(app.state.store, plan_id, "2.0.0")[-1]
    assert (last.stored.code, last.replayed.code) == ("hold-back", "hold-back")
    assert "R6" in last.replayed.rules and "R6" not in last.stored.rules
    assert last.changed


def test_replay_keeps_a_stop_the_replayed_version_makes(client, app):
    """The replay's CarePlan is its own: today's plan, never stopped, must not read as a
    clinician's resume of a stop the replayed version makes."""
    eligible_patient(client, day(0))
    put(client, b.red_flag_screen(day(-1), ("history-of-cancer",), rid="rf-old-positive"))
    eligible_patient(client)
    plan_id = enrol(client)
    # The positive screen is 31, 37 and 38 days old: past 1.0.0's 30-day look-back.
    for n in (30, 36, 37):
        submit(client, plan_id, [3, 2, 1, 1, 0], day(n))
    # 35 days: the first session sees the positive screen (R1), the later ones do not, so
    # only the stop the replay made can keep them stopped.
    _publish_version(client, "3.0.0", **{"red-flag-lookback-days": 35})
    results = replay(app.state.store, plan_id, "3.0.0")
    assert [r.stored.code for r in results] == ["continue"] * 3
    assert [r.replayed.code for r in results] == ["stop-and-refer"] * 3
    assert all(r.changed for r in results)


def test_replay_follows_a_clinicians_resume(client, app):
    """A real stop, then a clinician resumed the plan: replaying the same version gives the
    stored decisions back, the resume included."""
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    stop = submit(client, plan_id, [3, 2, 1, 1, 0], day(1), location_end="below-knee")
    assert decision_codes(stop.json())[0] == "stop-and-refer"
    plan = client.get(f"/fhir/CarePlan/{plan_id}").json()
    for activity in plan["activity"]:
        activity["detail"]["status"] = "in-progress"
    assert (
        client.put(f"/fhir/CarePlan/{plan_id}", json=plan, headers=if_match(plan)).status_code
        == 200
    )
    for n in (2, 3):
        assert submit(client, plan_id, [3, 2, 1, 1, 0], day(n)).status_code == 200
    results = replay(app.state.store, plan_id)
    assert [r.replayed.code for r in results] == ["stop-and-refer", "continue", "continue"]
    assert not any(r.changed for r in results)
    # Editing the first panel afterwards (a note) moves its lastUpdated past the resume: the
    # replay still places the resume by when the session was decided.
    panels = client.get(f"/fhir/Observation?based-on=CarePlan/{plan_id}&_sort=date").json()
    first = next(e["resource"] for e in panels["entry"] if "hasMember" in e["resource"])
    first = {**first, "status": "amended", "note": [{"text": "patient called: all fine"}]}
    assert client.put(f"/fhir/Observation/{first['id']}", json=first).status_code == 200
    assert not any(r.changed for r in replay(app.state.store, plan_id))


def test_replay_command(client, app, history, monkeypatch, capsys, database_url):
    monkeypatch.setenv("CAREPLAN_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        assert cli(["replay", "--care-plan", history, "--json"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [line["replayed"]["code"] for line in lines] == ["continue", "continue"]
        assert [line["changed"] for line in lines] == [False, False]
        assert cli(["replay", "--care-plan", history]) == 0
        table = capsys.readouterr()
        assert table.out.splitlines()[0].split()[:3] == ["session", "time", "session"]
        assert "2 decisions replayed against" in table.err and "0 differ" in table.err
        assert cli(["replay", "--care-plan", history, "--plan-version", "9.9"]) == 2
        assert "not stored" in capsys.readouterr().err
        _publish_version(client, "1.0.1", **{"severe-pain-threshold": 5})
        assert cli(["replay", "--care-plan", history, "--plan-version", "1.0.1"]) == 1  # as diff
        table = capsys.readouterr()
        assert table.out.splitlines()[-1].endswith("CHANGED")
        assert "2 decisions replayed against" in table.err and "1 differ" in table.err
    finally:
        get_settings.cache_clear()


def _evaluate(client, plan_id: str, at) -> dict:
    at_text = at.isoformat().replace("+00:00", "Z")
    body = {"resourceType": "Parameters", "parameter": [{"name": "at", "valueDateTime": at_text}]}
    response = client.post(f"/fhir/CarePlan/{plan_id}/$evaluate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_replay_follows_an_evaluation_that_resumed_the_plan(client, app):
    """A hold, then $evaluate resumed the plan once its retry window opened, then sessions:
    the same version replayed decides as stored, the evaluation decided again in its turn."""
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    assert decision_codes(submit(client, plan_id, [1, 2, 4, 6], day(2)).json())[0] == "hold-back"
    assert "R11" in decision_codes(_evaluate(client, plan_id, day(9)))
    for n in (10, 11):
        submit(client, plan_id, [3, 2, 1, 1, 0], day(n))
    results = replay(app.state.store, plan_id)
    assert [r.session.startswith("evaluation|") for r in results] == [False] * 2 + [True] + [
        False
    ] * 2
    assert "R11" in results[2].replayed.rules
    assert [r.replayed for r in results] == [r.stored for r in results]
    assert not any(r.changed for r in results)


def test_replay_leaves_out_an_evaluation_a_late_session_made_stale(client, app):
    """As the plan's own history does: the evaluation re-checked stored data without the
    session that arrived after it."""
    eligible_patient(client, day(0))
    eligible_patient(client)
    plan_id = enrol(client)
    submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    _evaluate(client, plan_id, day(3))
    assert decision_codes(submit(client, plan_id, [1, 2, 4, 6], day(2)).json())[0] == "hold-back"
    assert decision_codes(submit(client, plan_id, [3, 2, 1, 1, 0], day(4)).json())[:2] == [
        "hold-back",
        "R11",
    ]
    results = replay(app.state.store, plan_id)
    assert not any(r.session.startswith("evaluation|") for r in results)
    assert [r.replayed for r in results] == [r.stored for r in results]
    assert not any(r.changed for r in results)
