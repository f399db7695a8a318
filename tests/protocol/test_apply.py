"""$apply: a CarePlan whose activities reflect eligibility."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from service.protocol.apply import apply_plan
from tests.protocol.builders import (
    eligible_state,
    episode_phase,
    pain_days,
    plan_definition,
    record,
    red_flag_screen,
)
from tests.protocol.helpers import CLOCK

DEFINITIONS = Path(__file__).resolve().parents[2] / "service/protocol/definitions"


def _activity_definitions() -> dict[str, dict]:
    found = {}
    for path in DEFINITIONS.glob("ActivityDefinition-*.json"):
        ad = json.loads(path.read_text())
        found[f"{ad['url']}|{ad.get('version')}"] = ad
    return found


@pytest.mark.parametrize(
    ("observations", "status", "code"),
    [
        (eligible_state(CLOCK), "scheduled", "start"),
        (pain_days(CLOCK, [0] * 14), "not-started", "data-required"),
        (
            [*eligible_state(CLOCK), red_flag_screen(CLOCK - timedelta(hours=1), ("fever",), "x")],
            "not-started",
            "stop-and-refer",
        ),
        (
            [episode_phase(CLOCK - timedelta(days=1), "acute"), red_flag_screen(CLOCK)],
            "not-started",
            "supervision-required",
        ),
        (
            [
                episode_phase(CLOCK - timedelta(days=1), "recovering"),
                red_flag_screen(CLOCK),
                *pain_days(CLOCK, [2] * 14),
            ],
            "not-started",
            "not-yet-eligible",
        ),
    ],
)
def test_apply_reflects_eligibility(observations: list[dict], status: str, code: str) -> None:
    applied = apply_plan(plan_definition(), _activity_definitions(), record(observations), CLOCK)
    plan = applied.care_plan
    get_fhir_model_class("CarePlan").model_validate(plan)
    assert applied.decision.code == code
    assert [a["detail"]["status"] for a in plan["activity"]] == [status, status]
    assert plan["status"] == ("active" if code == "start" else "draft")
    assert plan["instantiatesCanonical"] == [applied.decision.plan_canonical]
    flexion = plan["activity"][0]["detail"]
    if code != "start":
        assert flexion["statusReason"]["coding"][0]["code"] == code
    assert flexion["scheduledTiming"]["repeat"]["frequencyMax"] == 4


def test_apply_is_deterministic() -> None:
    a = apply_plan(plan_definition(), {}, record(eligible_state(CLOCK)), CLOCK)
    b = apply_plan(plan_definition(), {}, record(eligible_state(CLOCK)), CLOCK)
    assert a.care_plan == b.care_plan
