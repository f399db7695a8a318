"""FHIR date/dateTime/instant values as UTC ranges [low, high] with the value's precision."""

import re
from datetime import UTC, datetime, timedelta

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

MIN_DT = datetime(1, 1, 1)
MAX_DT = datetime(9999, 12, 31, 23, 59, 59, 999999)


def _to_utc_naive(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def parse_range(text: str) -> tuple[datetime, datetime]:
    """Return the inclusive UTC range a FHIR date value covers.

    ValueError when malformed, or when it lies outside what a datetime holds (years 1-9999 in
    UTC: `0001-01-01T00:00:00+14:00` is in year 0); its message is this module's own, never
    the standard library's (which names Python types), since callers show it to clients.
    """
    match = _DATE_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a FHIR date, dateTime or instant")
    try:
        return _range(match)
    except _Invalid as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    except (ValueError, OverflowError):
        # The calendar: day 31 of a 30-day month, second 60, year 0.
        raise ValueError(f"{text!r} is not a valid calendar date or time") from None


class _Invalid(ValueError):
    """A reason of this module's own, shown as it is."""


def _range(match: re.Match[str]) -> tuple[datetime, datetime]:
    parts = match.groupdict()
    year = int(parts["y"])
    if parts["m"] is None:
        low = datetime(year, 1, 1)
        return low, datetime(year + 1, 1, 1) - timedelta(microseconds=1) if year < 9999 else MAX_DT
    month = int(parts["m"])
    if parts["d"] is None:
        low = datetime(year, month, 1)
        nxt = (
            datetime(year + (month == 12), month % 12 + 1, 1) if year < 9999 or month < 12 else None
        )
        return low, (nxt - timedelta(microseconds=1)) if nxt else MAX_DT
    day = int(parts["d"])
    if parts["H"] is None:
        low = datetime(year, month, day)
        return low, low + timedelta(days=1, microseconds=-1)
    if parts["tz"] is None and parts["S"] is not None:
        raise _Invalid("a time needs a time zone")
    if parts["S"] == "60":  # FHIR's regex allows it; no datetime (nor database) holds it
        raise _Invalid("leap seconds (second 60) are not supported")
    tz_text = parts["tz"] or "Z"
    if tz_text != "Z" and (int(tz_text[1:3]), int(tz_text[4:6])) > (14, 0):
        raise _Invalid("a UTC offset lies between -14:00 and +14:00")
    iso = f"{year:04d}-{month:02d}-{day:02d}T{parts['H']}:{parts['M']}:{parts['S'] or '00'}"
    fraction = parts["f"] or ""
    moment = datetime.fromisoformat(iso + fraction[:7] + ("+00:00" if tz_text == "Z" else tz_text))
    try:
        low = _to_utc_naive(moment)
    except OverflowError:
        raise _Invalid("its UTC offset moves it outside the years 0001-9999") from None
    if parts["S"] is None:
        return low, low + timedelta(minutes=1, microseconds=-1)
    if fraction:
        return low, low
    return low, low + timedelta(seconds=1, microseconds=-1)


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_instant(moment: datetime) -> str:
    """FHIR instant with millisecond precision and an explicit UTC offset."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
