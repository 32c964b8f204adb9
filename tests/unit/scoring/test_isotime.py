"""iso_ms formats as datetime does, at the edges of its rounding and range too."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from intent_stream.scoring.isotime import iso_ms


def _reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


EDGES = [
    0,
    0.0,
    -0.0,
    0.0005,
    0.9995,
    0.9999995,
    0.9999996,
    5e-7,
    1.5e-6,
    -0.5,
    -1e-7,
    1767225599.9999995,
    1767225600,
    2**33 + 0.5,
    253402300798.9999,
    253402300799.0,
    253402300799.4,
]


@pytest.mark.parametrize("ts", EDGES)
def test_edges_match_datetime(ts: float) -> None:
    assert iso_ms(ts) == _reference(ts)


def test_random_times_match_datetime() -> None:
    rnd = random.Random(7)
    for _ in range(20000):
        whole = math.floor(rnd.uniform(-1e9, 2.534e11))
        # Fractions at and around the microsecond and millisecond rounding points.
        frac = rnd.randrange(1_000_000) / 1e6 + rnd.choice([0.0, 5e-7, -5e-7, 4.9e-7, 1e-9])
        for ts in (whole + frac, rnd.uniform(1.6e9, 1.9e9)):
            assert iso_ms(ts) == _reference(ts), ts


@pytest.mark.parametrize("ts", [float("inf"), float("-inf"), float("nan"), 1e20, -1e20])
def test_out_of_range_raises_as_datetime(ts: float) -> None:
    with pytest.raises((ValueError, OverflowError, OSError)) as expected:
        _reference(ts)
    with pytest.raises(expected.type):
        iso_ms(ts)
