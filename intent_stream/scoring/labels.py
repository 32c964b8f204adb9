"""Delayed labels: feature snapshots wait until an outcome, or their horizon, labels them.

The intent model predicts P(an opportunity or a deal for this account within ``horizon``).
Whether a moment was "30 days before an opportunity" is only known 30 days later, so each
account keeps a few *snapshots* of its features in its own state, and:

* an outcome that means buying (Opportunity Created, Deal Won) labels every snapshot taken
  within the horizon before it **positive**;
* Deal Lost labels the snapshots before it **negative**;
* a snapshot whose horizon passes with no outcome is **negative**. There is no timer per
  account: the check runs, in event time, whenever the account has an event, so a snapshot
  is learned when its account's clock moves past its horizon (see :meth:`DelayedLabels.expire`).

Snapshots are spaced ``horizon / snapshots`` apart (one per slot of event time in which the
account was active; a later event in the same slot replaces the slot's snapshot, so each slot
keeps the account's last state in it), so an account never holds more than ``snapshots + 1``
of them. Each is stored as ``[ts, [values...]]`` in the order of ``features``, in hundredths as
whole numbers (``1.1`` is ``110``), trailing zeros trimmed: about 40-100 bytes of JSON.
Snapshots stored before that (values as decimals) are still read: a list with any decimal in
it is the earlier layout.

The object is configuration; the per-account state is a plain list owned by the caller (it
lives in the account's table value), so nothing is rebuilt per event.

>>> labels = DelayedLabels(horizon_days=30, snapshots=10, features=("pricing_view", "people"))
>>> pending: list = []
>>> labels.observe(pending, {"pricing_view": 1.0986, "people": 2.0}, ts=0.0)
>>> labels.observe(pending, {"pricing_view": 0.5}, ts=5 * 86400.0)
>>> pending
[[0, [110, 200]], [432000, [50]]]
>>> labels.outcome(pending, ts=20 * 86400.0, positive=True)
[({'pricing_view': 1.1, 'people': 2.0}, True), ({'pricing_view': 0.5}, True)]
>>> labels.observe(pending, {"pricing_view": 0.1}, ts=21 * 86400.0)
>>> labels.expire(pending, now=50 * 86400.0)  # nothing happened within 30 days: negative
[]
>>> labels.expire(pending, now=52 * 86400.0)
[({'pricing_view': 0.1}, False)]
>>> pending
[]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["DelayedLabels", "Labelled"]

DAY = 86400.0

#: A learned example: the features of a snapshot and its label.
Labelled = tuple[dict[str, float], bool]


class DelayedLabels:
    """Keeps per-account feature snapshots and labels them when outcomes or horizons arrive.

    Parameters
    ----------
    horizon_days
        An outcome within this many days after a snapshot makes it positive.
    snapshots
        Most snapshots per horizon: they are ``horizon_days / snapshots`` days apart.
    features
        Feature names, in the order snapshots store their values; other features are not
        kept (the model never sees them in a label).
    """

    def __init__(
        self,
        *,
        horizon_days: float = 30.0,
        snapshots: int = 10,
        features: Sequence[str],
    ) -> None:
        if horizon_days <= 0 or snapshots < 1:
            raise ValueError("horizon_days must be positive and snapshots at least 1")
        self.horizon_days = horizon_days
        self.snapshots = snapshots
        self.features = tuple(features)
        self.horizon_s = horizon_days * DAY
        self.spacing_s = self.horizon_s / snapshots
        self._index = {name: i for i, name in enumerate(self.features)}

    # -- encoding ------------------------------------------------------------------------
    def encode(self, x: Mapping[str, float]) -> list[int]:
        """``x`` as values in :attr:`features` order, in hundredths, trailing zeros dropped.

        >>> DelayedLabels(features=("a", "b", "c")).encode({"b": 0.123456, "z": 9.0})
        [0, 12]
        """
        values: list[int] = [0] * len(self.features)
        last = -1
        index = self._index
        for name, value in x.items():
            i = index.get(name)
            if i is not None and value:
                values[i] = round(value * 100)
                if i > last:  # max(), without a call per feature
                    last = i
        del values[last + 1 :]
        return values

    def decode(self, values: Sequence[int | float]) -> dict[str, float]:
        """The feature dict of stored ``values`` (zeros left out, as features omit them).

        >>> labels = DelayedLabels(features=("a", "b", "c"))
        >>> labels.decode([0, 12, -250])
        {'b': 0.12, 'c': -2.5}
        >>> labels.decode([0, 0.12, -2.5])  # written before values were whole hundredths
        {'b': 0.12, 'c': -2.5}
        """
        names = self.features
        scale = 1.0 if any(isinstance(v, float) for v in values) else 100.0
        return {names[i]: v / scale for i, v in enumerate(values[: len(names)]) if v}

    # -- the per-account list --------------------------------------------------------------
    def observe(self, pending: list[Any], x: Mapping[str, float], ts: float) -> None:
        """Snapshot ``x`` at event time ``ts``: a new slot appends, the same slot replaces.

        Late snapshots (a slot before the newest one) are ignored: the account has moved on.
        """
        slot = int(ts // self.spacing_s)
        cell = [int(ts), self.encode(x)]
        if pending:
            last = int(pending[-1][0] // self.spacing_s)
            if slot < last:
                return
            if slot == last:
                pending[-1] = cell
                return
        pending.append(cell)
        # Bounded even if expiry lagged (late events, clock jumps): drop the oldest unlabelled.
        if len(pending) > self.snapshots + 1:
            del pending[0]

    def due(self, pending: Sequence[Any], now: float) -> bool:
        """Whether :meth:`expire` would return anything (a cheap test for the hot path)."""
        return bool(pending) and pending[0][0] + self.horizon_s < now

    def expire(self, pending: list[Any], now: float) -> list[Labelled]:
        """Remove and return, as negatives, snapshots whose horizon ended before ``now``."""
        out: list[Labelled] = []
        cutoff = now - self.horizon_s
        while pending and pending[0][0] < cutoff:
            out.append((self.decode(pending.pop(0)[1]), False))
        return out

    def outcome(self, pending: list[Any], ts: float, *, positive: bool) -> list[Labelled]:
        """Label the snapshots an outcome at ``ts`` decides; remove and return them.

        Positive outcomes label the snapshots within the horizon before ``ts``; negative ones
        (a lost deal) label every snapshot before ``ts``. Older snapshots are negatives whose
        horizon ended before the outcome; snapshots after ``ts`` (an outcome that arrives
        late) stay pending.
        """
        out: list[Labelled] = []
        cutoff = ts - self.horizon_s
        keep: list[Any] = []
        for cell in pending:
            if cell[0] > ts:
                keep.append(cell)
            elif cell[0] < cutoff:
                out.append((self.decode(cell[1]), False))
            else:
                out.append((self.decode(cell[1]), positive))
        pending[:] = keep
        return out
