"""The time the gateway reads, and the one rule for date-times that arrive without a UTC offset.

Code that waits for a TTL or an expiry takes a :class:`Clock` (the system clock by default), so a test moves time
forward instead of sleeping. Naive date-times are handled in one of two ways, never silently mixed: values from
outside (an operator, an API client) are refused when :func:`is_naive`; values the store gives back are UTC, because
the store is written in UTC only (:func:`as_utc`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never go backwards: for TTLs."""
        ...

    def now(self) -> datetime:
        """The current instant, timezone-aware in UTC: for expiries and timestamps."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and ``datetime.now(UTC)``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK = SystemClock()


def is_naive(value: datetime) -> bool:
    """True when ``value`` names no instant: it has no UTC offset (no tzinfo, or one that gives no offset)."""
    return value.tzinfo is None or value.utcoffset() is None


def as_utc(value: datetime) -> datetime:
    """A date-time read back from the store, as a UTC instant.

    Everything is written in UTC: SQLite gives it back without an offset (so it is UTC), Postgres in the session's
    time zone (so it is converted)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
