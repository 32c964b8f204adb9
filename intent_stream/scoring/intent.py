"""Intent scoring: a points prior blended with an online River model, with reasons.

Until outcome labels arrive, the :class:`PointsPrior` scores (decayed points per signal, as
HubSpot and MadKudu do). As labels arrive, :class:`IntentModel` shifts weight to its River
logistic regression: ``w = min(max_blend, n_labels / (n_labels + blend_labels))``. The prior
keeps a voice (``max_blend`` 0.5): the two together rank better than either alone (on the
journey generator, per event, ROC AUC 0.88-0.89 blended at most half and half, against
0.78-0.80 when the learned model takes over and 0.91 for the prior alone, whose weights were
written for the generator's vocabulary; see ``benchmarks/bench_quality.py``).

>>> m = IntentModel()
>>> cold = {"page_view": 0.7}
>>> hot = {"pricing_view": 1.6, "demo_request": 0.7, "high_intent": 1.9, "people": 4.0}
>>> m.score_one(hot) > 70 > m.score_one(cold)
True
>>> [r.text for r in m.explain(hot, top=1)]
['viewed pricing (4 times recently)']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from river import linear_model, optim

from intent_stream.scoring.signals import DEFAULT_SIGNALS, SignalSpec

__all__ = ["IntentModel", "PointsPrior", "Reason"]

_EXTRA_PHRASES = {
    "people": "people engaged in the last 30 days",
    "senior_people": "senior people engaged",
    "velocity": "activity is accelerating against the previous three weeks",
    "recency_days": "days since the last activity",
}
#: The prior's points for the features that are not signal counts (see :class:`PointsPrior`).
PEOPLE_POINTS = 4.0  # per engaged person beyond the first
SENIOR_POINTS = 3.0  # per senior person engaged
VELOCITY_POINTS = 2.0  # per unit of log velocity, at most VELOCITY_CAP
VELOCITY_CAP = 6.0
SURGE_POINTS = 10.0  # at a topic surge score of 100 (0 at 50)
QUIET_DAYS = 7.0  # silence tolerated before the prior deducts points
QUIET_POINTS = 1.0  # deducted per day of silence beyond QUIET_DAYS, at most QUIET_CAP
QUIET_CAP = 20.0


@dataclass(frozen=True)
class Reason:
    """One contribution to a score, in points (signed) and plain words."""

    feature: str
    contribution: float
    text: str


def _describe(feature: str, value: float, signals: Mapping[str, SignalSpec]) -> str:
    spec = signals.get(feature)
    if spec is not None:
        times = max(1, round(math.expm1(value)))
        return f"{spec.phrase} ({times} time{'s' if times != 1 else ''} recently)"
    if feature == "people":
        return (
            f"{value:.0f} {_EXTRA_PHRASES['people']}"
            if value != 1
            else ("1 person engaged in the last 30 days")
        )
    if feature == "senior_people":
        return f"{value:.0f} {_EXTRA_PHRASES['senior_people']}"
    if feature == "recency_days":
        return f"last activity {value:.0f} days ago"
    if feature == "topic_surge":
        return f"surging interest in a topic (surge score {50 + 50 * value:.0f})"
    if feature == "velocity":
        return (
            "activity is rising against the previous three weeks"
            if value > 0
            else ("activity is falling against the previous three weeks")
        )
    return feature.replace("_", " ")


class PointsPrior:
    """Decayed points per signal plus committee and momentum bonuses, squashed to 0-100.

    Points: each signal's weight (:data:`~intent_stream.scoring.signals.DEFAULT_SIGNALS`)
    times its decayed count; 4 per engaged person beyond the first; 3 per senior person; 2
    per unit of log velocity when activity rises (at most 6); up to 10 for a surging topic;
    minus 1 per day of silence beyond 7 (at most 20): a dormant account's old evidence is
    worth less, and the reasons say so. A quiet week against the previous three is not a
    penalty by itself.

    >>> prior = PointsPrior()
    >>> prior.contributions({"pricing_view": 0.6931472, "recency_days": 12.0})
    {'pricing_view': 8.0, 'recency_days': -5.0}
    """

    def __init__(
        self, *, signals: Mapping[str, SignalSpec] = DEFAULT_SIGNALS, scale: float = 50.0
    ) -> None:
        self.signals = signals
        self.scale = scale

    def contributions(self, x: Mapping[str, float]) -> dict[str, float]:
        """Points per feature (before squashing), each rounded to 4 decimals."""
        get, expm1 = x.get, math.expm1
        out = {
            name: round(spec.weight * expm1(value), 4)
            for name, spec in self.signals.items()
            if (value := get(name, 0.0))
        }
        people = get("people", 0.0)
        if people > 1:
            out["people"] = round(PEOPLE_POINTS * (people - 1), 4)
        if get("senior_people", 0.0):
            out["senior_people"] = round(SENIOR_POINTS * x["senior_people"], 4)
        velocity = get("velocity", 0.0)
        if velocity > 0:  # momentum adds a little; a quiet week is not a penalty
            out["velocity"] = round(min(VELOCITY_CAP, VELOCITY_POINTS * velocity), 4)
        surge = get("topic_surge", 0.0)
        if surge > 0:
            out["topic_surge"] = round(SURGE_POINTS * surge, 4)
        quiet = get("recency_days", 0.0) - QUIET_DAYS
        if quiet > 0:
            out["recency_days"] = round(-min(QUIET_CAP, QUIET_POINTS * quiet), 4)
        return out

    def score_one(self, x: Mapping[str, float]) -> float:
        """0-100: ``100 * (1 - exp(-points / scale))``, the points being the sum of
        :meth:`contributions` (at least 0).

        >>> PointsPrior().score_one({})
        0.0
        """
        return self.score_contributions(x)[0]

    def score_contributions(self, x: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        """:meth:`score_one` and :meth:`contributions` of ``x``, the points summed once.

        >>> x = {"pricing_view": 0.6931472, "people": 3.0, "velocity": 0.4, "recency_days": 9.0}
        >>> PointsPrior().score_contributions(x) == (PointsPrior().score_one(x),
        ...                                          PointsPrior().contributions(x))
        True
        """
        out = self.contributions(x)
        return 100.0 * (1.0 - math.exp(-max(0.0, sum(out.values())) / self.scale)), out


#: Features the regression sees through ``log1p`` (counts of people, days of silence): on
#: their raw scale (0-90 days) plain SGD steps overshoot; signal counts are log1p already.
_LOG_INPUTS = frozenset({"people", "senior_people", "recency_days"})


def _inputs(x: Mapping[str, float]) -> dict[str, float]:
    return {k: (math.log1p(max(v, 0.0)) if k in _LOG_INPUTS else v) for k, v in x.items()}


class IntentModel:
    """P(opportunity soon) from an online logistic regression, blended with the prior."""

    def __init__(
        self,
        *,
        signals: Mapping[str, SignalSpec] = DEFAULT_SIGNALS,
        prior: PointsPrior | None = None,
        blend_labels: int = 200,
        max_blend: float = 0.5,
        learning_rate: float = 0.05,
    ) -> None:
        if not 0.0 <= max_blend <= 1.0:
            raise ValueError(f"max_blend must be between 0 and 1 (got {max_blend})")
        self.signals = signals
        self.prior = prior
        self.blend_labels = blend_labels
        self.max_blend = max_blend
        self.learning_rate = learning_rate
        self._prior = prior if prior is not None else PointsPrior(signals=signals)
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate))
        self.n_labels = 0
        self.n_positive = 0

    @property
    def blend(self) -> float:
        """Weight of the learned model in the score: 0 before any label, growing with the
        labels up to ``max_blend``.

        >>> m = IntentModel(blend_labels=10, max_blend=0.6)
        >>> m.n_labels = 10; m.blend
        0.5
        >>> m.n_labels = 1000; m.blend
        0.6
        """
        return min(self.max_blend, self.n_labels / (self.n_labels + self.blend_labels))

    def learn_one(self, x: Mapping[str, float], y: bool) -> None:
        self.model.learn_one(_inputs(x), y)
        self.n_labels += 1
        self.n_positive += int(y)

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        """The learned model's probability alone."""
        proba = self.model.predict_proba_one(_inputs(x))  # type: ignore[no-untyped-call]
        return float(proba.get(True, 0.0))

    def score_one(self, x: Mapping[str, float]) -> float:
        """Intent score 0-100."""
        return self.score_explained(x)[0]

    def score_explained(self, x: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        """:meth:`score_one` of ``x`` and the prior's points per feature, for :meth:`explain`
        to reuse (``contributions=``): an account scored is usually explained afterwards,
        and the prior's points are most of what the score costs."""
        prior, contributions = self._prior.score_contributions(x)
        w = self.blend
        if w == 0.0:
            return prior, contributions
        return (1.0 - w) * prior + w * 100.0 * self.predict_proba_one(x), contributions

    def explain(
        self,
        x: Mapping[str, float],
        *,
        top: int = 3,
        phrases: Mapping[str, str] | None = None,
        contributions: Mapping[str, float] | None = None,
    ) -> list[Reason]:
        """Top positive, then negative, contributions in points and plain words.

        ``phrases`` overrides the words for some features (the caller knows, for example,
        which topic surges: ``{"topic_surge": "surging interest in security"}``).
        ``contributions``: the prior's points for ``x`` if already known (see
        :meth:`score_explained`); the prior does not learn, so they stay valid.
        """
        w = self.blend
        if contributions is None:
            contributions = self._prior.contributions(x)
        contrib = {k: (1.0 - w) * v for k, v in contributions.items()}
        if w:
            weights, w10, log1p = self.model.weights, w * 10.0, math.log1p
            for name, value in x.items():  # the regression's inputs (_inputs), inline
                if name in _LOG_INPUTS:
                    value = log1p(max(value, 0.0))
                c = w10 * weights.get(name, 0.0) * value  # (w * 10.0) * weight * value
                if c:
                    contrib[name] = contrib.get(name, 0.0) + c
        ranked = sorted(contrib.items(), key=lambda kv: -abs(kv[1]))
        positive = [kv for kv in ranked if kv[1] > 0][:top]
        negative = [kv for kv in ranked if kv[1] < 0][:top]
        said = phrases or {}
        return [
            Reason(
                name,
                value,
                said.get(name) or _describe(name, x.get(name, 0.0), self.signals),
            )
            for name, value in positive + negative
        ]

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("n_positive", 0)
        state.setdefault("max_blend", 0.5)  # checkpoints saved before the cap
        self.__dict__.update(state)
