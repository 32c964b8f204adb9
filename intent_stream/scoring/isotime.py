"""Epoch seconds as ISO-8601 UTC text with milliseconds, without a ``datetime`` per call.

Alerts, stage transitions and every read-model snapshot carry such times, and a snapshot's
``updated_at`` (wall time) and ``last_event_at`` (its newest event) are new at almost every
update, so a cache of formatted times rarely has them. :func:`iso_ms` gives the text that
``datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")`` (with ``Z`` for the
offset) gives, at about a third of its cost: the microseconds rounded as ``datetime``
rounds them (half to even, from the fraction ``math.modf`` splits off), then truncated to
milliseconds as ``isoformat`` does; the date from ``time.gmtime`` (kept per day), hours,
minutes and seconds by arithmetic. Times before 1970 or after 9999, and ones that are not
numbers, are left to ``datetime`` (its range, and its errors).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

__all__ = ["iso_ms"]

#: 9999-12-31T23:59:59 UTC: the last second ``datetime`` represents.
_LAST_SECOND = 253402300799.0
#: Dates (``YYYY-MM-DDT``) by day number since 1970, as met; emptied when it holds
#: ``_DAYS_KEPT`` (~0.1 KB each): event and wall times fall on few days.
_DATES: dict[int, str] = {}
_DAYS_KEPT = 4096
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))
_MILLIS = tuple(f"{n:03d}" for n in range(1000))


def _iso_datetime(ts: float) -> str:
    """The reference formatting (and the one used outside :func:`iso_ms`'s fast range).

    >>> _iso_datetime(0.0005)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def iso_ms(ts: float) -> str:
    """``ts`` (epoch seconds) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``, as :func:`_iso_datetime` has it.

    >>> iso_ms(0), iso_ms(1767225600.5), iso_ms(1767225599.9999996)
    ('1970-01-01T00:00:00.000Z', '2026-01-01T00:00:00.500Z', '2026-01-01T00:00:00.000Z')
    >>> iso_ms(1767225600.0015) == _iso_datetime(1767225600.0015)
    True
    >>> iso_ms(-1.5)
    '1969-12-31T23:59:58.500Z'
    >>> iso_ms(float("inf"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    OverflowError: ...
    """
    if not 0.0 <= ts < _LAST_SECOND:  # before 1970, after 9999, or not a number
        return _iso_datetime(ts)
    fraction, whole = math.modf(ts)
    # As datetime.fromtimestamp: microseconds rounded half to even; a rounding up to a
    # whole second carries into the seconds.
    micro = round(fraction * 1e6)
    seconds = int(whole)
    if micro >= 1_000_000:
        micro -= 1_000_000
        seconds += 1
    day, seconds = divmod(seconds, 86400)
    date = _DATES.get(day)
    if date is None:
        if len(_DATES) >= _DAYS_KEPT:
            _DATES.clear()
        t = time.gmtime(day * 86400)
        date = _DATES[day] = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    two = _TWO_DIGITS
    return f"{date}{two[hours]}:{two[minutes]}:{two[seconds]}.{_MILLIS[micro // 1000]}Z"
