"""Property tests over random repetition series, under version 1.0.0 and version 1.1.0."""

from __future__ import annotations

import itertools
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.protocol.decide import Session, decide
from service.protocol.history import CONTINUE, DECISION_CODES, HOLD_BACK, PROGRESS
from service.protocol.outputs import build_outputs
from service.protocol.parameters import Params, read_params
from service.protocol.session_features import is_rising
from tests.protocol.builders import (
    at,
    care_plan,
    eligible_state,
    plan_definition,
    plan_definition_v11,
    record,
    session_resources,
)

VERSIONS = {"1.0.0": plan_definition(), "1.1.0": plan_definition_v11()}
CLOCK = at(30)
RECORD = record(eligible_state(CLOCK))
series = st.lists(st.integers(min_value=0, max_value=10), min_size=0, max_size=12)
locations = st.sampled_from([None, "central", "one-side", "buttock-thigh", "below-knee"])


versions = pytest.mark.parametrize("version", sorted(VERSIONS))


def _params(version: str) -> Params:
    return read_params(VERSIONS[version])


def _decide(version: str, reps: list[int], seed: int = 0, **kwargs: object):  # type: ignore[no-untyped-def]
    panel, members = session_resources(list(reps), CLOCK, **kwargs)  # type: ignore[arg-type]
    random.Random(seed).shuffle(members)
    return decide(VERSIONS[version], RECORD, Session.from_observations(panel, members), CLOCK)


@versions
@settings(max_examples=150, deadline=None)
@given(series, locations, locations)
def test_a_decision_always_exists(
    version: str, reps: list[int], start: str | None, end: str | None
) -> None:
    d = _decide(version, reps, location_start=start, location_end=end)
    assert d.code in DECISION_CODES


@versions
@settings(max_examples=150, deadline=None)
@given(series)
def test_rising_never_continues_or_progresses(version: str, reps: list[int]) -> None:
    params = _params(version)
    d = _decide(version, reps)
    if is_rising(tuple(reps), params) and len(reps) >= params.min_repetitions_scored:
        assert d.code == HOLD_BACK
        assert d.code not in (CONTINUE, PROGRESS)


@settings(max_examples=150, deadline=None)
@given(series)
def test_rising_by_the_majority_of_steps_under_1_1_0(reps: list[int]) -> None:
    """C1: a series that climbs overall, with more steps up than down, never continues."""
    steps = [b - a for a, b in itertools.pairwise(reps)]
    climbs = len(reps) >= 3 and reps[-1] - reps[0] >= 2
    if climbs and sum(s > 0 for s in steps) > sum(s < 0 for s in steps):
        assert _decide("1.1.0", reps).code not in (CONTINUE, PROGRESS)


@versions
@settings(max_examples=100, deadline=None)
@given(series, st.integers(min_value=0, max_value=10_000))
def test_order_of_repetition_observations_does_not_matter(
    version: str, reps: list[int], seed: int
) -> None:
    assert _decide(version, reps, 0).features == _decide(version, reps, seed).features


@versions
@settings(max_examples=60, deadline=None)
@given(series)
def test_same_input_same_bytes(version: str, reps: list[int]) -> None:
    def dump() -> bytes:
        out = build_outputs(_decide(version, reps), _params(version), care_plan())
        return orjson.dumps([out.guidance_response, out.care_plan, *out.created])

    assert dump() == dump()
