"""Pain scores (LOINC 72514-3) as EHRs and apps send them: a `{score}` valueQuantity or a
valueInteger, read alike by the session checks and by every feature the rules see."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from service.protocol.decide import decide
from service.protocol.fhirdata import score
from service.protocol.history import CONTINUE, DATA_REQUIRED, HOLD_BACK, START
from service.protocol.session_checks import check_pain_observation, check_session
from tests.protocol.builders import (
    daily_pain,
    episode_phase,
    pain_days,
    plan_definition,
    record,
    red_flag_screen,
    session,
)
from tests.protocol.helpers import CLOCK, decide_apply

Json = dict[str, Any]


def as_integer(observation: Json) -> Json:
    """The same pain score sent as valueInteger instead of a {score} valueQuantity."""
    changed = {k: v for k, v in observation.items() if k != "valueQuantity"}
    if "valueQuantity" in observation:
        changed["valueInteger"] = observation["valueQuantity"]["value"]
    return changed


def test_score_reads_both_forms() -> None:
    quantity = daily_pain(CLOCK, 4)
    assert score(quantity) == 4
    assert score(as_integer(quantity)) == 4
    assert score(as_integer(daily_pain(CLOCK, 0))) == 0
    assert score({"valueString": "4"}) is None
    assert score({"valueInteger": True}) is None


@pytest.mark.parametrize("value", [0, 3, 10])
def test_an_integer_pain_score_0_to_10_is_usable(value: int) -> None:
    assert check_pain_observation(as_integer(daily_pain(CLOCK, value)), "Observation") == []


@pytest.mark.parametrize(
    ("change", "expression", "says"),
    [
        ({"valueInteger": 11}, "Observation.valueInteger", "outside 0-10"),
        ({"valueInteger": -1}, "Observation.valueInteger", "outside 0-10"),
        ({"valueString": "3"}, "Observation.valueString", "not valueString"),
        ({"valueCodeableConcept": {"text": "mild"}}, "Observation.valueCodeableConcept", "not"),
        ({}, "Observation.value[x]", "missing"),
        (
            {
                "valueQuantity": {
                    "value": 30,
                    "unit": "mm",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm",
                }
            },
            "Observation.valueQuantity",
            "'mm'",
        ),
        (
            {"valueQuantity": {"value": 3, "unit": "points"}},
            "Observation.valueQuantity.unit",
            "points",
        ),
    ],
)
def test_an_unusable_pain_score_says_what_was_wrong(
    change: Json, expression: str, says: str
) -> None:
    observation = {k: v for k, v in daily_pain(CLOCK, 3).items() if k != "valueQuantity"}
    problems = check_pain_observation({**observation, **change}, "Observation")
    assert [p.expression for p in problems] == [expression]
    assert says in problems[0].message
    # Each refusal names the forms that would do.
    if expression != "Observation.valueInteger":
        assert "valueInteger" in problems[0].message


def test_a_session_of_integer_repetitions_passes_the_session_checks() -> None:
    quantities = session([3, 2, 1, 1, 0], CLOCK)
    integers = type(quantities)(quantities.panel, tuple(as_integer(m) for m in quantities.members))
    assert check_session(integers, record().care_plan or {}, CLOCK + timedelta(hours=1)) == []


@pytest.mark.parametrize(
    ("reps", "code", "rules"),
    [
        ([3, 2, 1, 1, 0], CONTINUE, ("R9",)),
        ([1, 2, 4, 6], HOLD_BACK, ("R4",)),
        ([8, 8, 8], HOLD_BACK, ("R5",)),
    ],
)
def test_integer_repetitions_decide_as_quantities_do(
    reps: list[int], code: str, rules: tuple[str, ...]
) -> None:
    state = [
        episode_phase(CLOCK - timedelta(days=20), "recovering"),
        red_flag_screen(CLOCK - timedelta(days=2)),
        *pain_days(CLOCK, [0] * 14),
    ]
    quantities = session(reps, CLOCK)
    integers = type(quantities)(quantities.panel, tuple(as_integer(m) for m in quantities.members))
    by_quantity = decide(plan_definition(), record(state), quantities, CLOCK)
    by_integer = decide(plan_definition(), record(state), integers, CLOCK)
    assert (by_integer.code, by_integer.rule_ids[: len(rules)]) == (code, rules)
    assert (by_integer.code, by_integer.rule_ids, by_integer.features) == (
        by_quantity.code,
        by_quantity.rule_ids,
        by_quantity.features,
    )


def test_integer_daily_pain_counts_for_eligibility() -> None:
    """Criterion A reads daily pain sent as integers: without them, `daily-pain` is missing."""
    state = [
        episode_phase(CLOCK - timedelta(days=20), "recovering"),
        red_flag_screen(CLOCK - timedelta(days=2)),
    ]
    assert decide_apply(state).code == DATA_REQUIRED
    integers = [as_integer(o) for o in pain_days(CLOCK, [0] * 14)]
    decided = decide_apply([*state, *integers])
    assert (decided.code, decided.rule_ids) == (START, ("R8",))
    assert decided.features["criterion-a"] is True
    # A painful integer day is not pain-free.
    painful = [as_integer(o) for o in pain_days(CLOCK, [0] * 9 + [4] * 5)]
    assert decide_apply([*state, *painful]).code != START
