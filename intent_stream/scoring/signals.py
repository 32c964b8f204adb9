"""Per-account intent signals: exponentially decayed counts, recency, velocity, committee.

Decay is lazy: each signal stores ``(value, ts)`` and is decayed to the time it is read or
updated, so no sweep over all accounts is ever needed.

>>> s = AccountSignals()
>>> s.learn_one(signal="pricing_view", ts=0.0, person_id="p1")
>>> half = DEFAULT_SIGNALS["pricing_view"].half_life_days * 86400
>>> round(s.count("pricing_view", half), 3)
0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from intent_stream.scoring.surge import TopicSurge, normalise_topic

__all__ = [
    "DEFAULT_SIGNALS",
    "FEATURES",
    "FIT_TRAITS",
    "HIGH_INTENT",
    "KEY_ACTIVITIES",
    "OUTCOMES",
    "PAGE_SIGNALS",
    "TRACK_SIGNALS",
    "AccountSignals",
    "SignalSpec",
    "classify",
    "fit_traits",
    "topic_of",
]

DAY = 86400.0
_MONTH = 30 * DAY  # people active within it are the account's committee
_MAX_PEOPLE = 16
#: Days of per-day event counts an account keeps, up to its newest (velocity's window).
_DAYS_KEPT = 28
_MAX_ROLE_LENGTH = 24
_SENIOR = frozenset({"c_level", "vp", "director", "owner", "partner", "head"})


@dataclass(frozen=True)
class SignalSpec:
    """How one signal decays, what it is worth to the prior, and how to say it."""

    half_life_days: float
    weight: float
    high_intent: bool
    phrase: str


DEFAULT_SIGNALS: Mapping[str, SignalSpec] = {
    "page_view": SignalSpec(7, 1.0, False, "browsed the website"),
    "content_view": SignalSpec(7, 1.5, False, "read blog posts or docs"),
    "product_view": SignalSpec(10, 3.0, False, "looked at product pages"),
    "pricing_view": SignalSpec(14, 8.0, True, "viewed pricing"),
    "comparison_view": SignalSpec(14, 7.0, True, "compared us with alternatives"),
    "content_download": SignalSpec(21, 5.0, False, "downloaded content"),
    "webinar": SignalSpec(21, 5.0, False, "joined webinars"),
    "email_open": SignalSpec(7, 0.5, False, "opened emails"),
    "email_click": SignalSpec(10, 2.0, False, "clicked emails"),
    "form_submit": SignalSpec(30, 10.0, True, "contacted sales"),
    "demo_request": SignalSpec(30, 25.0, True, "requested a demo"),
    "trial_start": SignalSpec(30, 20.0, True, "started a trial"),
    "product_usage": SignalSpec(14, 1.0, False, "used the product"),
}

HIGH_INTENT = frozenset(name for name, spec in DEFAULT_SIGNALS.items() if spec.high_intent)
#: Signals an alert lists as key activities (the last time each happened, from ``counts``).
KEY_ACTIVITIES = HIGH_INTENT | {"webinar", "content_download"}

#: Every feature :meth:`AccountSignals.features` can produce, in a fixed order (delayed-label
#: snapshots store values in this order).
FEATURES: tuple[str, ...] = (
    *DEFAULT_SIGNALS,
    "high_intent",
    "people",
    "senior_people",
    "recency_days",
    "velocity",
    "topic_surge",
)

#: Firmographic traits kept per account for the fit model, and where group/identify calls
#: carry them: group ``traits.{name}`` or identify ``traits.company.{key}``.
FIT_TRAITS: Mapping[str, tuple[str, ...]] = {
    "industry": ("industry",),
    "employees": ("employees", "employee_count"),
    "country": ("country",),
    "plan": ("plan",),
}
_MAX_TRAIT_LENGTH = 64

#: Stored state names the default signals by these codes (their position here, which never
#: changes: new signals are appended). Other signal names are stored as they are.
_SIGNAL_CODES: tuple[str, ...] = (
    "page_view",
    "content_view",
    "product_view",
    "pricing_view",
    "comparison_view",
    "content_download",
    "webinar",
    "email_open",
    "email_click",
    "form_submit",
    "demo_request",
    "trial_start",
    "product_usage",
)
_CODE = {name: str(i) for i, name in enumerate(_SIGNAL_CODES)}
_NAME = {code: name for name, code in _CODE.items()}
_DEFAULT_SURGE = TopicSurge()

OUTCOMES: Mapping[str, str] = {
    "Opportunity Created": "opportunity",
    "Deal Won": "won",
    "Deal Lost": "lost",
    "Subscription Cancelled": "churned",
}

#: The signal of a track event, by its name in lower case (see :func:`classify`).
TRACK_SIGNALS: Mapping[str, str] = {
    "pricing viewed": "pricing_view",
    "whitepaper downloaded": "content_download",
    "case study downloaded": "content_download",
    "ebook downloaded": "content_download",
    "content downloaded": "content_download",
    "webinar registered": "webinar",
    "webinar attended": "webinar",
    "email opened": "email_open",
    "email clicked": "email_click",
    "email link clicked": "email_click",
    "form submitted": "form_submit",
    "contact sales": "form_submit",
    "demo requested": "demo_request",
    "trial started": "trial_start",
    "feature used": "product_usage",
    "product used": "product_usage",
    "session started": "product_usage",
}

_PATHS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("/pricing",), "pricing_view"),
    (("/compare", "/vs", "/alternatives"), "comparison_view"),
    (("/product", "/features", "/platform", "/integrations"), "product_view"),
    (("/blog", "/resources", "/docs"), "content_view"),
)
#: Every signal :func:`classify` can give a page or screen event.
PAGE_SIGNALS = frozenset({signal for _, signal in _PATHS} | {"page_view"})


def _path(event: Mapping[str, Any]) -> str:
    props = event.get("properties")
    if isinstance(props, dict):
        path = props.get("path") or props.get("url")
        if isinstance(path, str):
            return path
    ctx = event.get("context")
    if isinstance(ctx, dict):
        page = ctx.get("page")
        if isinstance(page, dict):
            path = page.get("path") or page.get("url")
            if isinstance(path, str):
                return path
    return ""


def topic_of(event: Mapping[str, Any]) -> str | None:
    """The content topic of a page or track event (``properties.topic``), normalised.

    >>> topic_of({"type": "page", "properties": {"topic": "Data Pipelines"}})
    'data pipelines'
    """
    props = event.get("properties")
    return normalise_topic(props.get("topic")) if isinstance(props, dict) else None


def fit_traits(event: Mapping[str, Any]) -> dict[str, Any]:
    """Firmographic traits a group or identify call carries (see :data:`FIT_TRAITS`).

    >>> fit_traits({"type": "group", "traits": {"industry": "Software", "employees": 120}})
    {'industry': 'Software', 'employees': 120}
    >>> fit_traits({"type": "identify", "traits": {"company": {"employee_count": 40}}})
    {'employees': 40}
    """
    traits = event.get("traits")
    if not isinstance(traits, dict):
        return {}
    source = traits
    if event.get("type") == "identify":
        company = traits.get("company")
        source = company if isinstance(company, dict) else {}
    out: dict[str, Any] = {}
    for name, keys in FIT_TRAITS.items():
        for key in keys:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                out[name] = value.strip()[:_MAX_TRAIT_LENGTH]
                break
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[name] = value
                break
    return out


def classify(event: Mapping[str, Any]) -> str | None:
    """The signal an event carries, or ``None`` (identify, group, outcomes, unknown).

    >>> classify({"type": "page", "properties": {"path": "/pricing/enterprise"}})
    'pricing_view'
    >>> classify({"type": "track", "event": "Demo Requested"})
    'demo_request'
    >>> classify({"type": "identify"}) is None
    True
    """
    kind = event.get("type")
    if kind in ("page", "screen"):
        path = _path(event).lower()
        if "://" in path:
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        for prefixes, signal in _PATHS:
            if path.startswith(prefixes):
                return signal
        return "page_view"
    if kind == "track":
        name = event.get("event")
        if isinstance(name, str):
            return TRACK_SIGNALS.get(name.lower())
    return None


_RATES: dict[int, tuple[Mapping[str, SignalSpec], dict[str, float]]] = {}


def _dense_days(days: Mapping[int, int]) -> list[int]:
    """Events per day as ``[first day, n, n, ...]`` (every day up to the last, zeros too).

    Only the 28 days up to the newest are kept: velocity reads no older day (it reads the 28
    days before the time it is asked for, never earlier than the newest event).

    >>> _dense_days({20504: 2, 20507: 1}), _dense_days({})
    ([20504, 2, 0, 0, 1], [])
    >>> len(_dense_days({1: 1, 100: 1}))
    29
    """
    if not days:
        return []
    last = max(days)
    first = max(min(days), last - (_DAYS_KEPT - 1))
    out = [first]
    out += map(days.get, range(first, last + 1), repeat(0))
    return out


def _sparse_days(data: Any) -> dict[int, int]:
    """The day -> events mapping from :func:`_dense_days` output or the earlier dict layout.

    >>> _sparse_days([20504, 2, 0, 0, 1]), _sparse_days({"20504": 2})
    ({20504: 2, 20507: 1}, {20504: 2})
    """
    if isinstance(data, dict):
        return {int(d): int(n) for d, n in data.items()}
    if not data:
        return {}
    first = int(data[0])
    return {first + i: int(n) for i, n in enumerate(data[1:]) if n}


def _rates(signals: Mapping[str, SignalSpec]) -> dict[str, float]:
    """Decay rate per signal, computed once per specs mapping (not per account)."""
    cached = _RATES.get(id(signals))
    if cached is None or cached[0] is not signals:
        rates = {k: math.log(2) / (v.half_life_days * DAY) for k, v in signals.items()}
        cached = _RATES[id(signals)] = (signals, rates)
    return cached[1]


_HIGH: dict[int, tuple[Mapping[str, SignalSpec], frozenset[str]]] = {}


def _high_intent(signals: Mapping[str, SignalSpec]) -> frozenset[str]:
    """The high-intent signals of a specs mapping, found once per mapping (not per account).

    >>> sorted(_high_intent(DEFAULT_SIGNALS))
    ['comparison_view', 'demo_request', 'form_submit', 'pricing_view', 'trial_start']
    """
    cached = _HIGH.get(id(signals))
    if cached is None or cached[0] is not signals:
        names = frozenset(name for name, spec in signals.items() if spec.high_intent)
        cached = _HIGH[id(signals)] = (signals, names)
    return cached[1]


class AccountSignals:
    """Compact per-account signal state, updated per event and read as model features."""

    def __init__(
        self,
        *,
        signals: Mapping[str, SignalSpec] = DEFAULT_SIGNALS,
        surge: TopicSurge = _DEFAULT_SURGE,
    ) -> None:
        self.signals = signals
        self.surge = surge
        self._rates = _rates(signals)
        self._high_intent = _high_intent(signals)
        self.topics: dict[str, list[Any]] = {}  # topic -> [recent, baseline, ts, surging]
        self.counts: dict[str, list[float]] = {}  # signal -> [decayed value, at ts]
        self.people: dict[str, list[Any]] = {}  # person -> [last ts, senior (0/1)[, role]]
        self.days: dict[int, int] = {}  # day number -> events that day (last 28 days)
        self.first_seen: float | None = None
        self.last_seen: float | None = None
        # Decayed counts and topic surge scores as computed at an event time (features()
        # does), read again at that same time by the stage rules, the alert, the reasons and
        # the read model. Learning forgets them (_forget_memo): nothing else changes counts,
        # topics or first_seen.
        self._counts_at: float | None = None
        self._counts_memo: dict[str, float] = {}
        self._topics_at: float | None = None
        self._topics_memo: list[tuple[str, float]] = []

    def _forget_memo(self) -> None:
        self._counts_at = self._topics_at = None

    def _decayed(self, signal: str, ts: float) -> float:
        cell = self.counts.get(signal)
        if cell is None:
            return 0.0
        value, at = cell
        return value * math.exp(-self._rates[signal] * (ts - at)) if ts > at else value

    def count(self, signal: str, now: float) -> float:
        """Decayed count of ``signal`` at ``now``."""
        if now == self._counts_at:
            return self._counts_memo.get(signal, 0.0)
        return self._decayed(signal, now)

    def learn_one(self, *, signal: str, ts: float, person_id: str | None = None) -> None:
        """Add one occurrence of ``signal`` at event time ``ts`` (late events allowed)."""
        if signal not in self._rates:
            return
        self._counts_at = self._topics_at = None  # _forget_memo, inline (every signal)
        cell = self.counts.get(signal)
        if cell is None:
            self.counts[signal] = [1.0, ts]
        elif ts >= cell[1]:
            self.counts[signal] = [self._decayed(signal, ts) + 1.0, ts]
        else:  # a late event: decay the increment, not the stored value
            cell[0] += math.exp(-self._rates[signal] * (cell[1] - ts))
        self._seen(ts)
        if person_id:
            self._person(person_id, ts, senior=None)

    def learn_topic(self, topic: str, ts: float) -> bool:
        """Count one event on a content topic; ``True`` when the topic starts to surge."""
        self._counts_at = self._topics_at = None  # _forget_memo, inline
        return self.surge.learn_one(self.topics, topic, ts, since=self.first_seen)

    def top_topics(self, now: float, *, n: int = 3) -> list[tuple[str, float]]:
        """The account's surging topics (score >= 60), strongest first."""
        return self.surge.top_of(self.topic_scores(now), n=n)

    def strongest_topic(self, now: float) -> tuple[str, float] | None:
        """The topic with the highest surge score at ``now`` (any score), if any."""
        return self.surge.strongest_of(self.topic_scores(now))

    def topic_scores(self, now: float) -> list[tuple[str, float]]:
        """Every topic's surge score at ``now`` (``TopicSurge.scores``), computed once per
        event time between two learning steps.

        >>> s = AccountSignals(); _ = s.learn_topic("security", 0.0)
        >>> s.topic_scores(86400.0) is s.topic_scores(86400.0), s.topic_scores(0.0)
        (True, [('security', 50.0)])
        """
        if now != self._topics_at:
            self._topics_memo = self.surge.scores(self.topics, now, since=self.first_seen)
            self._topics_at = now
        return self._topics_memo

    def observe_person(
        self, *, person_id: str, ts: float, role: str | None = None, seniority: str | None = None
    ) -> None:
        """Record an identified person (identify traits) for the committee's breadth."""
        senior = None if seniority is None else seniority.lower() in _SENIOR
        self._person(person_id, ts, senior=senior, role=role)

    def _seen(self, ts: float) -> None:
        self.first_seen = ts if self.first_seen is None else min(self.first_seen, ts)
        self.last_seen = ts if self.last_seen is None else max(self.last_seen, ts)
        day = int(ts // DAY)
        self.days[day] = self.days.get(day, 0) + 1
        if len(self.days) > _DAYS_KEPT:
            newest = max(self.days)
            for old in [d for d in self.days if d <= newest - _DAYS_KEPT]:
                del self.days[old]

    def _person(
        self, person_id: str, ts: float, *, senior: bool | None, role: str | None = None
    ) -> None:
        cell = self.people.get(person_id)
        if cell is None:
            cell = self.people[person_id] = [ts, int(bool(senior))]
            if len(self.people) > _MAX_PEOPLE:
                oldest = min(self.people, key=lambda p: self.people[p][0])
                del self.people[oldest]
        else:
            cell[0] = max(cell[0], ts)
            if senior is not None:
                cell[1] = int(senior)
        if role is not None:
            role = " ".join(role.split())[:_MAX_ROLE_LENGTH]
            if role:  # the role is kept as the cell's third item, only when known
                cell[2:] = [role]

    def forget_person(self, person_id: str) -> bool:
        """Remove a person from the committee (a privacy request); return whether it was there.

        Only the person's entry goes: the signals their events added stay, counted for the
        account, with nothing that names them.

        >>> s = AccountSignals(); s.learn_one(signal="pricing_view", ts=0.0, person_id="p1")
        >>> s.forget_person("p1"), s.forget_person("p1"), s.features(0.0)["people"]
        (True, False, 0.0)
        """
        return self.people.pop(person_id, None) is not None

    def velocity(self, now: float) -> float:
        """Events in the last 7 days against the weekly average of the 21 before (smoothed)."""
        today = int(now // DAY)
        recent = before = 0
        for d, n in self.days.items():
            if today - 7 < d <= today:
                recent += n
            elif today - 28 < d <= today - 7:
                before += n
        return (recent + 1.0) / (before / 3.0 + 1.0)

    def _decay_all(self, now: float) -> dict[str, float]:
        """Every count decayed to ``now`` (as :meth:`_decayed` does it)."""
        rates, exp = self._rates, math.exp
        return {
            name: value * exp(-rates[name] * (now - at)) if now > at else value
            for name, (value, at) in self.counts.items()
        }

    def features(self, now: float) -> dict[str, float]:
        """Model features at event time ``now``: log1p of decayed counts and account traits."""
        high_intent, log1p = self._high_intent, math.log1p
        x: dict[str, float] = {}
        high: list[float] = []
        if now != self._counts_at:
            self._counts_memo = self._decay_all(now)
            self._counts_at = now
        for name, value in self._counts_memo.items():
            x[name] = log1p(value)
            if name in high_intent:
                high.append(value)
        x["high_intent"] = log1p(sum(high))
        people = senior = 0
        for cell in self.people.values():
            if now - cell[0] <= _MONTH:
                people += 1
                senior += cell[1]
        x["people"] = float(people)
        x["senior_people"] = float(senior)
        x["recency_days"] = (now - self.last_seen) / DAY if self.last_seen is not None else 90.0
        x["velocity"] = math.log(self.velocity(now))
        if self.topics:
            best = self.strongest_topic(now)
            if best is not None and best[1] > 50.0:
                x["topic_surge"] = (best[1] - 50.0) / 50.0
        return x

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state (the signal specs are configuration, not state).

        Compact, as it is stored per account: default signals by a short code
        (:data:`_SIGNAL_CODES`), event times of counts and people in whole seconds (rounded
        down: a count's time only decays it, and comparing it with an alert's time must not
        make an event look newer than it was), and the events per day as a dense run
        ``[first day, n, n, ...]``.

        >>> s = AccountSignals(); s.learn_one(signal="pricing_view", ts=86400.5, person_id="p")
        >>> s.to_dict()
        {'c': {'3': [1.0, 86400]}, 'p': {'p': [86400, 0]}, 'd': [1, 1], 'f': 86400.5, 'l': 86400.5}
        """
        code, floor = _CODE.get, math.floor
        out: dict[str, Any] = {
            "c": {code(k, k): [round(v, 3), floor(t)] for k, (v, t) in self.counts.items()},
            "p": {k: [floor(v[0]), *v[1:]] for k, v in self.people.items()},
            "d": _dense_days(self.days),
            "f": self.first_seen,
            "l": self.last_seen,
        }
        if self.topics:
            out["t"] = {
                k: [round(r, 3), round(b, 3), int(t), f] for k, (r, b, t, f) in self.topics.items()
            }
        return out

    def settle(self) -> None:
        """Make this state, in place, what ``from_dict(self.to_dict())`` would rebuild: counts,
        people and topics as :meth:`to_dict` rounds them, days older than the 28 kept dropped.

        An account that a batch updates again continues from what its table value would hold
        (as if each record were applied alone) without encoding and decoding it each time.

        >>> s = AccountSignals(); s.learn_one(signal="pricing_view", ts=3.75, person_id="p")
        >>> _ = s.learn_topic("security", 3.75); s.learn_one(signal="page_view", ts=40 * DAY)
        >>> again = AccountSignals.from_dict(s.to_dict()); s.settle()
        >>> (s.counts, s.people, s.topics, s.days) == (
        ...     again.counts, again.people, again.topics, again.days)
        True
        >>> s.counts["pricing_view"], s.days
        ([1.0, 3], {40: 1})
        """
        floor = math.floor
        for cell in self.counts.values():
            cell[0], cell[1] = round(cell[0], 3), floor(cell[1])
        for cell in self.people.values():
            cell[0] = floor(cell[0])
        for cell in self.topics.values():
            cell[0], cell[1], cell[2] = round(cell[0], 3), round(cell[1], 3), int(cell[2])
        days = self.days
        if days:
            # Already what the round trip gives in the usual case (events in time order):
            # days in ascending order, none before the 28 kept, none empty. Checking costs
            # ~0.4 us, rebuilding ~4.6 (27 days).
            keys = list(days)
            if keys != sorted(keys) or keys[0] <= keys[-1] - _DAYS_KEPT or 0 in days.values():
                self.days = _sparse_days(_dense_days(days))
        self._forget_memo()

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        signals: Mapping[str, SignalSpec] = DEFAULT_SIGNALS,
        surge: TopicSurge = _DEFAULT_SURGE,
    ) -> AccountSignals:
        """Rebuild from :meth:`to_dict` output.

        >>> s = AccountSignals(); s.learn_one(signal="demo_request", ts=5.0, person_id="p")
        >>> AccountSignals.from_dict(s.to_dict()).features(5.0) == s.features(5.0)
        True

        Layouts written before the compact one load too:

        >>> old = {"c": {"demo_request": [1.0, 5.25]}, "p": {"p": [5.25, 0]}, "d": {"0": 1},
        ...        "f": 5.25, "l": 5.25}
        >>> AccountSignals.from_dict(old).to_dict()["c"], AccountSignals.from_dict(old).days
        ({'10': [1.0, 5]}, {0: 1})
        """
        s = cls(signals=signals, surge=surge)
        s.topics = {k: list(v) for k, v in data.get("t", {}).items()}
        name, rates = _NAME.get, s._rates
        s.counts = {n: list(v) for k, v in data["c"].items() if (n := name(k, k)) in rates}
        s.people = {k: list(v) for k, v in data["p"].items()}
        s.days = _sparse_days(data["d"])
        s.first_seen = data["f"]
        s.last_seen = data["l"]
        return s
