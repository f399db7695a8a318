"""Parameters come only from the PlanDefinition; a missing one is an error that names it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.protocol.codes import EXT_DECISION_PARAMETER
from service.protocol.parameters import PARAMETER_NAMES, lookback_days, read_params
from tests.protocol.builders import DEFAULT_PARAMETERS, plan_definition

SHIPPED = (
    Path(__file__).resolve().parents[2]
    / "service/protocol/definitions/PlanDefinition-flexion-in-lying-protocol.json"
)


def test_reads_every_parameter_and_level() -> None:
    params = read_params(plan_definition())
    assert set(PARAMETER_NAMES) == set(DEFAULT_PARAMETERS)
    assert params.severe_pain_threshold == 7
    assert [lv.number for lv in params.levels] == [1, 2, 3]
    level1 = params.level(1)
    assert (level1.min_repetitions, level1.max_repetitions) == (5, 6)
    assert (level1.sessions_min_per_day, level1.sessions_max_per_day) == (3, 4)
    assert params.plan_canonical.endswith("|1.0.0")


@pytest.mark.parametrize("name", sorted(DEFAULT_PARAMETERS))
def test_missing_parameter_is_an_error_naming_it(name: str) -> None:
    pd = plan_definition()
    pd["extension"] = [
        e
        for e in pd["extension"]
        if not (e["url"] == EXT_DECISION_PARAMETER and e["extension"][0]["valueCode"] == name)
    ]
    with pytest.raises(ValueError, match=name):
        read_params(pd)


def test_lookback_is_the_widest_window() -> None:
    assert lookback_days(read_params(plan_definition())) == 30
    assert lookback_days(read_params(plan_definition(repeat_holdback_window_days=60))) == 60


@pytest.mark.skipif(not SHIPPED.exists(), reason="shipped PlanDefinition not written yet")
def test_shipped_plan_definition_has_the_table_defaults() -> None:
    params = read_params(json.loads(SHIPPED.read_text()))
    for name, (value, _) in DEFAULT_PARAMETERS.items():
        assert getattr(params, name.replace("-", "_")) == value, name
    assert [lv.number for lv in params.levels] == [1, 2, 3]
    assert (params.level(1).min_repetitions, params.level(1).max_repetitions) == (5, 6)
    assert params.level(1).sessions_max_per_day == 4
    assert all(lv.extension_canonical for lv in params.levels)


@pytest.mark.skipif(not SHIPPED.exists(), reason="shipped PlanDefinition not written yet")
def test_shipped_plan_definition_drives_decisions() -> None:
    from service.protocol.decide import decide
    from tests.protocol.builders import at, eligible_state, record, session

    shipped = json.loads(SHIPPED.read_text())
    clock = at(30)
    d = decide(shipped, record(eligible_state(clock)), session([1, 2, 3, 4, 5], clock), clock)
    assert (d.code, d.rule_ids) == ("hold-back", ("R4",))
    assert d.plan_canonical == f"{shipped['url']}|{shipped['version']}"


def test_read_once_per_content_and_read_again_when_it_changes() -> None:
    """read_params is cached on the PlanDefinition's content, not on the dict object: an
    edited threshold is read, even when the same dict was edited in place."""
    pd = plan_definition()
    first = read_params(pd)
    assert read_params(plan_definition()) is first  # equal content: the cached Params
    for ext in pd["extension"]:
        parts = {sub["url"]: sub for sub in ext.get("extension", [])}
        if parts.get("name", {}).get("valueCode") == "severe-pain-threshold":
            parts["value"]["valueInteger"] = 8
    edited = read_params(pd)
    assert edited is not first
    assert (first.severe_pain_threshold, edited.severe_pain_threshold) == (7, 8)


def test_activities_do_not_share_the_cached_timing() -> None:
    from service.protocol.activities import level_activities

    level = read_params(plan_definition()).level(1)
    before = json.dumps(level.timing, sort_keys=True)
    for activity in level_activities(level, "in-progress"):
        activity["detail"]["scheduledTiming"]["repeat"]["frequency"] = 99
    assert json.dumps(read_params(plan_definition()).level(1).timing, sort_keys=True) == before
