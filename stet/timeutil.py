"""Timestamps: UTC ISO 8601 with microseconds, ending in `Z`, and integer microseconds.

Stored times are text in one fixed form (``2026-11-29T07:16:58.663687Z``) beside an integer
count of microseconds since the epoch wherever times are compared: comparisons are on
instants, never on strings.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .errors import InvalidInput

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """The stored form: UTC, microseconds, `Z`."""
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"  # a fifth of strftime's cost


def micros(moment: datetime) -> int:
    delta = moment.astimezone(timezone.utc) - _EPOCH
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
    return moment.astimezone(timezone.utc)


def parse_micros(value: str) -> int:
    return micros(parse(value))


def from_micros(us: int) -> str:
    seconds, rest = divmod(us, 1_000_000)
    return iso(datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=rest))
