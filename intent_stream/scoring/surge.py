"""Topic surge: is an account reading about a topic more than it usually does?

Bombora's Company Surge compares an account's consumption of a topic over the last 3 weeks
with the previous 12, weekly, and reports 0-100 where 50 is the account's normal and 60 or
more a surge. We do it per event, in O(1), with two exponentially decayed counts per topic:

* ``recent``: mean lifetime ``window_days`` (21 days; half-life 14.6 days);
* ``baseline``: mean lifetime ``baseline_days`` (84 days; half-life 58.2 days).

Each count divided by its effective window, ``lifetime * (1 - exp(-age / lifetime))`` where
``age`` is how long the *account* has been seen, is an events-per-day rate; so an account
seen for only a week has no baseline to surge against, while a topic new to an account seen
for months surges. At a steady rate the two rates are equal (score about 50); a burst moves
the short one first (up to ``baseline_days / window_days`` = 4 times the long one); waning
interest drops it below. ``score = 50 + 25 * log2((recent rate + e) / (baseline rate + e))``
with ``e = prior / baseline_days`` (a pseudo-rate that damps tiny counts), clipped to 0-100:
a ratio of 1.32 is 60 (a surge), 2 is 75, 4 is 100. With less than ``min_evidence`` decayed
events in the recent window there is not enough evidence and the score is exactly 50.

Per account at most ``max_topics`` topics are kept (the least read one, by baseline, makes
room), each as ``[recent, baseline, ts, surging]``, decayed lazily when read or updated.

>>> surge = TopicSurge()
>>> topics: dict = {}
>>> DAY = 86400.0
>>> for day in range(0, 84, 4):  # an even trickle for 12 weeks: the account's normal
...     _ = surge.learn_one(topics, "security", day * DAY, since=0.0)
>>> round(surge.score(topics["security"], 84 * DAY, since=0.0))  # four quiet days since
47
>>> started = [
...     surge.learn_one(topics, "security", (85 + i / 4) * DAY, since=0.0) for i in range(12)
... ]
>>> any(started), round(surge.score(topics["security"], 88 * DAY, since=0.0))
(True, 67)
>>> surge.top(topics, 88 * DAY, since=0.0)
[('security', 67.4)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TopicSurge", "normalise_topic"]

DAY = 86400.0
_MAX_TOPIC_LENGTH = 48


def normalise_topic(value: Any) -> str | None:
    """A topic property as a short, case-folded key, or ``None`` if it is not usable.

    >>> normalise_topic("  Data Security "), normalise_topic(""), normalise_topic(3)
    ('data security', None, None)
    """
    if not isinstance(value, str):
        return None
    known = _NORMALISED
    if value in known:
        return known[value]
    if len(known) >= _NORMALISED_MAX:
        known.clear()
    topic = known[value] = " ".join(value.split()).casefold()[:_MAX_TOPIC_LENGTH] or None
    return topic


#: Topic properties normalised so far: a site's pages repeat a few topics, for every signal
#: counted. Emptied when full, so exact and bounded whatever the traffic.
_NORMALISED: dict[str, str | None] = {}
_NORMALISED_MAX = 4096


class TopicSurge:
    """Streaming per-topic surge scores over a per-account ``{topic: cell}`` dict."""

    def __init__(
        self,
        *,
        window_days: float = 21.0,
        baseline_days: float = 84.0,
        min_evidence: float = 3.0,
        prior: float = 1.0,
        max_topics: int = 8,
        threshold: float = 60.0,
    ) -> None:
        if not 0 < window_days < baseline_days:
            raise ValueError("need 0 < window_days < baseline_days")
        self.window_days = window_days
        self.baseline_days = baseline_days
        self.min_evidence = min_evidence
        self.prior = prior
        self.max_topics = max_topics
        self.threshold = threshold
        self._short = 1.0 / (window_days * DAY)
        self._long = 1.0 / (baseline_days * DAY)

    def _decayed(self, cell: list[Any], now: float) -> tuple[float, float]:
        dt = now - cell[2]
        if dt <= 0:
            return cell[0], cell[1]
        return cell[0] * math.exp(-self._short * dt), cell[1] * math.exp(-self._long * dt)

    def _score(self, recent: float, baseline: float, age_s: float | None) -> float:
        if recent < self.min_evidence:
            return 50.0
        return self._score_in(recent, baseline, *self._windows(age_s))

    def _windows(self, age_s: float | None) -> tuple[float, float]:
        """The effective windows, in days, of an account seen for ``age_s`` seconds."""
        short_days, long_days = self.window_days, self.baseline_days
        if age_s is not None:  # the account's history is shorter than the windows
            age_days = max(age_s / DAY, 1.0)
            short_days *= -math.expm1(-age_days / self.window_days)
            long_days *= -math.expm1(-age_days / self.baseline_days)
        return short_days, long_days

    def _score_in(
        self, recent: float, baseline: float, short_days: float, long_days: float
    ) -> float:
        """:meth:`_score` in the windows :meth:`_windows` gives (``recent`` is enough)."""
        e = self.prior / self.baseline_days
        ratio = (recent / short_days + e) / (baseline / long_days + e)
        return min(100.0, max(0.0, 50.0 + 25.0 * math.log2(ratio)))

    def score(self, cell: list[Any], now: float, *, since: float | None = None) -> float:
        """The 0-100 surge score of one topic cell at event time ``now``.

        ``since``: when the account was first seen (``None``: assume a long history).
        """
        age = None if since is None else now - since
        return self._score(*self._decayed(cell, now), age)

    def learn_one(
        self, topics: dict[str, list[Any]], topic: str, ts: float, *, since: float | None = None
    ) -> bool:
        """Count one event on ``topic`` at ``ts``; ``True`` when the topic starts to surge.

        A topic surges when its score reaches ``threshold`` and stops below ``threshold - 10``
        (hysteresis, so one surge is counted once).
        """
        cell = topics.get(topic)
        if cell is None:
            if len(topics) >= self.max_topics:
                weakest = min(topics, key=lambda t: self._decayed(topics[t], ts)[1])
                del topics[weakest]
            cell = topics[topic] = [0.0, 0.0, ts, 0]
        if ts >= cell[2]:
            recent, baseline = self._decayed(cell, ts)
            cell[0], cell[1], cell[2] = recent + 1.0, baseline + 1.0, ts
        else:  # a late event: decay the increment to the cell's time instead
            dt = cell[2] - ts
            cell[0] += math.exp(-self._short * dt)
            cell[1] += math.exp(-self._long * dt)
        score = self._score(cell[0], cell[1], None if since is None else cell[2] - since)
        if not cell[3] and score >= self.threshold:
            cell[3] = 1
            return True
        if cell[3] and score < self.threshold - 10.0:
            cell[3] = 0
        return False

    def top(
        self,
        topics: Mapping[str, list[Any]],
        now: float,
        *,
        n: int = 3,
        since: float | None = None,
    ) -> list[tuple[str, float]]:
        """The ``n`` topics with the highest surge scores at or above ``threshold``."""
        return self.top_of(self.scores(topics, now, since=since), n=n)

    def strongest(
        self, topics: Mapping[str, list[Any]], now: float, *, since: float | None = None
    ) -> tuple[str, float] | None:
        """The topic with the highest surge score (any score), or ``None`` without topics."""
        return self.strongest_of(self.scores(topics, now, since=since))

    def scores(
        self, topics: Mapping[str, list[Any]], now: float, *, since: float | None = None
    ) -> list[tuple[str, float]]:
        """Every topic's surge score at ``now``, in ``topics`` order: what :meth:`top_of` and
        :meth:`strongest_of` choose from, so a caller needing both scores the topics once.

        :meth:`score` of each topic; the windows depend on the account's age alone, so they
        are computed once for all its topics.

        >>> surge, topics = TopicSurge(), {"ai": [5.0, 6.0, 0.0, 1], "iot": [1.0, 2.0, 0.0, 0]}
        >>> surge.scores(topics, 9 * DAY, since=0.0) == [
        ...     (t, surge.score(cell, 9 * DAY, since=0.0)) for t, cell in topics.items()]
        True
        """
        out: list[tuple[str, float]] = []
        windows: tuple[float, float] | None = None
        short, long, min_evidence, exp = self._short, self._long, self.min_evidence, math.exp
        for topic, cell in topics.items():
            recent, baseline, at = cell[0], cell[1], cell[2]
            dt = now - at
            if dt > 0:  # _decayed, inline: this runs for every topic of every account scored
                recent, baseline = recent * exp(-short * dt), baseline * exp(-long * dt)
            if recent < min_evidence:
                out.append((topic, 50.0))
                continue
            if windows is None:
                windows = self._windows(None if since is None else now - since)
            out.append((topic, self._score_in(recent, baseline, *windows)))
        return out

    def top_of(self, scored: Iterable[tuple[str, float]], *, n: int = 3) -> list[tuple[str, float]]:
        """:meth:`top` of topics already scored (:meth:`scores`)."""
        rounded = [(topic, round(score, 1)) for topic, score in scored]
        surging = [ts for ts in rounded if ts[1] >= self.threshold]
        return sorted(surging, key=lambda ts: (-ts[1], ts[0]))[:n]

    @staticmethod
    def strongest_of(scored: Iterable[tuple[str, float]]) -> tuple[str, float] | None:
        """:meth:`strongest` of topics already scored (:meth:`scores`): the first best."""
        best: tuple[str, float] | None = None
        for topic, score in scored:
            if best is None or score > best[1]:
                best = (topic, score)
        return best
