"""The plan's start (period.start, else when the CarePlan was first stored) and the one check
that refuses anything timed before it."""

from datetime import UTC, datetime, timedelta, timezone

from service.protocol.plan_start import before_plan_start, plan_start

STORED = datetime(2026, 3, 5, 10, 30, 0, 123000, tzinfo=UTC)


def test_period_start_wins_over_when_the_plan_was_stored() -> None:
    start = plan_start({"period": {"start": "2026-03-01T08:00:00+01:00"}}, STORED)
    assert start is not None
    assert start.moment == datetime(2026, 3, 1, 7, tzinfo=UTC)
    assert "period.start 2026-03-01T08:00:00+01:00" in start.said


def test_a_date_alone_starts_where_that_day_begins_first() -> None:
    """00:00 at UTC+14:00: a session on the start day counts in every time zone."""
    start = plan_start({"period": {"start": "2026-03-01"}}, STORED)
    assert start is not None
    west = timezone(timedelta(hours=-11))
    first_day_far_west = datetime(2026, 2, 28, 23, 30, tzinfo=west)  # 1 March, 10:30 UTC
    assert before_plan_start([("t", first_day_far_west)], start, "cp") == []
    day_before = datetime(2026, 2, 28, 9, 59, tzinfo=UTC)
    assert [p.expression for p in before_plan_start([("t", day_before)], start, "cp")] == ["t"]


def test_without_period_start_the_first_stored_time_is_the_start() -> None:
    start = plan_start({"period": {"end": "2027-01-01"}}, STORED)
    assert start is not None and start.moment == STORED
    assert "first stored 2026-03-05T10:30:00.123Z" in start.said
    assert plan_start({}, None) is None


def test_each_time_before_the_start_is_named() -> None:
    start = plan_start({}, STORED)
    times = [
        ("panel.effective[x]", datetime(1900, 1, 1, tzinfo=UTC)),
        ("repetition[0].effective[x]", STORED),  # at the start is not before it
        ("repetition[1].effective[x]", None),  # no time: other checks say so
    ]
    problems = before_plan_start(times, start, "cp1")
    assert [p.expression for p in problems] == ["panel.effective[x]"]
    assert "before CarePlan/cp1 started" in problems[0].message
    assert before_plan_start(times, None, "cp1") == []
