"""The online transition model: P(an account reaches a target stage within a horizon).

One :class:`TransitionModel` learns, per stage, how likely an account in that stage is to reach
its target (the stage's ``next`` for the funnel, ``churned`` for the churn warning) within
``horizon_days`` of event time. Labels come from what the stage machine observes: a snapshot of
the account's evidence is taken when it enters a stage; reaching the target within the horizon
labels it positive, leaving another way or letting the horizon pass labels it negative.

The probability blends a smoothed base rate per stage (a Beta prior, so it is defined from the
first event) with a River logistic regression on the evidence, shifting weight to the
regression as labels arrive (``w = n / (n + blend_labels)``), as the intent model does. Both
``learn_one`` and ``predict_one`` are called only at transitions and horizon expiries, never
per event.

>>> m = TransitionModel(prior=0.2, prior_weight=10)
>>> round(m.predict_one({"high_intent": 1.0}, stage="evaluation"), 3)
0.2
>>> for _ in range(30):
...     m.learn_one({"high_intent": 2.0}, True, stage="evaluation")
...     m.learn_one({"high_intent": 0.0}, False, stage="evaluation")
>>> m.predict_one({"high_intent": 2.0}, stage="evaluation") > 0.5
True
>>> m.predict_one({"high_intent": 2.0}, stage="evaluation") > m.predict_one(
...     {"high_intent": 0.0}, stage="evaluation")
True
>>> m.n_labels
60
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from river import linear_model, optim

__all__ = ["TransitionModel"]


class TransitionModel:
    """P(reaching the target stage within the horizon | stage, evidence), learned online."""

    def __init__(
        self,
        *,
        horizon_days: float = 30.0,
        prior: float = 0.2,
        prior_weight: float = 10.0,
        blend_labels: int = 50,
        learning_rate: float = 0.05,
    ) -> None:
        if not 0.0 < prior < 1.0:
            raise ValueError("prior must be between 0 and 1")
        self.horizon_days = horizon_days
        self.prior = prior
        self.prior_weight = prior_weight
        self.blend_labels = blend_labels
        self.learning_rate = learning_rate
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate))
        #: stage -> [labels, positives]
        self.counts: dict[str, list[int]] = {}
        self.n_labels = 0
        self.n_positive = 0

    @property
    def horizon_s(self) -> float:
        return self.horizon_days * 86400.0

    @staticmethod
    def _x(x: Mapping[str, float], stage: str) -> dict[str, float]:
        # The stage as a one-hot feature: one regression serves every stage.
        return {**x, f"stage={stage}": 1.0}

    def base_rate(self, stage: str) -> float:
        """The stage's smoothed share of positive labels (the prior before any label)."""
        n, pos = self.counts.get(stage, (0, 0))
        return (pos + self.prior * self.prior_weight) / (n + self.prior_weight)

    def blend(self, stage: str) -> float:
        """Weight of the regression for ``stage`` (0 before its first label)."""
        n = self.counts.get(stage, (0, 0))[0]
        return n / (n + self.blend_labels)

    def learn_one(self, x: Mapping[str, float], y: bool, *, stage: str) -> None:
        self.model.learn_one(self._x(x, stage), y)
        cell = self.counts.setdefault(stage, [0, 0])
        cell[0] += 1
        cell[1] += int(y)
        self.n_labels += 1
        self.n_positive += int(y)

    def predict_one(self, x: Mapping[str, float], *, stage: str) -> float:
        """Probability 0-1 of reaching the target within the horizon."""
        base = self.base_rate(stage)
        w = self.blend(stage)
        if w == 0.0:
            return base
        proba = self.model.predict_proba_one(self._x(x, stage))  # type: ignore[no-untyped-call]
        return (1.0 - w) * base + w * float(proba.get(True, 0.0))

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("counts", {})
        self.__dict__.update(state)
