"""Property tests over random repetition series."""

from __future__ import annotations

import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from service.protocol.decide import Session, decide
from service.protocol.history import DECISION_CODES, HOLD_BACK
from service.protocol.outputs import build_outputs
from service.protocol.parameters import read_params
from service.protocol.session_features import is_rising
from tests.protocol.builders import (
    at,
    care_plan,
    eligible_state,
    plan_definition,
    record,
    session_resources,
)

PD = plan_definition()
PARAMS = read_params(PD)
CLOCK = at(30)
RECORD = record(eligible_state(CLOCK))
series = st.lists(st.integers(min_value=0, max_value=10), min_size=0, max_size=12)
locations = st.sampled_from([None, "central", "one-side", "buttock-thigh", "below-knee"])


def _decide(reps: list[int], seed: int = 0, **kwargs: object):  # type: ignore[no-untyped-def]
    panel, members = session_resources(list(reps), CLOCK, **kwargs)  # type: ignore[arg-type]
    random.Random(seed).shuffle(members)
    return decide(PD, RECORD, Session.from_observations(panel, members), CLOCK)


@settings(max_examples=150, deadline=None)
@given(series, locations, locations)
def test_a_decision_always_exists(reps: list[int], start: str | None, end: str | None) -> None:
    d = _decide(reps, location_start=start, location_end=end)
    assert d.code in DECISION_CODES


@settings(max_examples=150, deadline=None)
@given(series)
def test_rising_never_continues_or_progresses(reps: list[int]) -> None:
    d = _decide(reps)
    if is_rising(tuple(reps), PARAMS) and len(reps) >= PARAMS.min_repetitions_scored:
        assert d.code == HOLD_BACK


@settings(max_examples=100, deadline=None)
@given(series, st.integers(min_value=0, max_value=10_000))
def test_order_of_repetition_observations_does_not_matter(reps: list[int], seed: int) -> None:
    assert _decide(reps, 0).features == _decide(reps, seed).features


@settings(max_examples=60, deadline=None)
@given(series)
def test_same_input_same_bytes(reps: list[int]) -> None:
    def dump() -> bytes:
        out = build_outputs(_decide(reps), PARAMS, care_plan())
        return orjson.dumps([out.guidance_response, out.care_plan, *out.created])

    assert dump() == dump()
