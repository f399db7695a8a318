"""Shared helpers for the protocol tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from service.protocol.decide import Decision, decide
from tests.protocol.builders import (
    at,
    eligible_state,
    plan_definition,
    record,
    session,
)

CLOCK = at(30)


def decide_session(
    reps: list[int | None],
    end: datetime = CLOCK,
    *,
    extra: list[dict[str, Any]] | None = None,
    state: list[dict[str, Any]] | None = None,
    pd: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Decision:
    """Decide one session for an eligible patient with no history."""
    observations = (eligible_state(end - timedelta(hours=1)) if state is None else state) + (
        extra or []
    )
    return decide(pd or plan_definition(), record(observations), session(reps, end, **kwargs), end)


def decide_apply(
    observations: list[dict[str, Any]], clock: datetime = CLOCK, **kw: Any
) -> Decision:
    """Decide with no session and no history (the $apply / first $evaluate path)."""
    return decide(
        kw.pop("pd", None) or plan_definition(), record(observations, plan=None), None, clock
    )
