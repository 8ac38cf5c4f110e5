"""Timestamps: UTC ISO 8601 with microseconds, ending in `Z`, and integer microseconds.

Stored times are text in one fixed form (``2026-11-29T07:16:58.663687Z``) beside an integer
count of microseconds since the epoch wherever times are compared: comparisons are on
instants, never on strings.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .errors import InvalidInput

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: What Python's datetime can hold, and so every time stet stores: years 1 to 9999, in UTC.
RANGE = "times must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z"


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """The stored form: UTC, microseconds, `Z`."""
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"  # a fifth of strftime's cost


def micros(moment: datetime) -> int:
    try:
        delta = moment.astimezone(timezone.utc) - _EPOCH
    except OverflowError:  # an offset that carries the instant past year 1 or 9999
        raise InvalidInput(f"{moment.isoformat()!r} is out of range: {RANGE}") from None
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse(value: str) -> datetime:
    """Any ISO 8601 instant (a date alone means its midnight UTC; no zone means UTC)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:59:59-05:00 is in year 10000 in UTC
        raise InvalidInput(f"{value!r} is out of range: {RANGE}") from None


def parse_micros(value: str) -> int:
    return micros(parse(value))


def from_micros(us: int) -> str:
    try:
        moment = _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        raise InvalidInput(f"{us} microseconds after the epoch is out of range: {RANGE}") from None
    return iso(moment)
