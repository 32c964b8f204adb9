"""Progressive validation of the fit model on labelled rows (a CRM export), and its metrics.

Each row is scored by the model *before* the model learns it, so every prediction is made on
data the model has not seen, in the order the rows arrive, exactly as the engine would have
scored them online. The model is the engine's own :class:`~intent_stream.scoring.FitModel`,
warmed by the pass. Rows scored before the model is ready get its neutral prior and count.

The metrics are exact, from the collected (probability, label) pairs (River's streaming
``ROCAUC`` is an approximation): ROC AUC with ties counted half, PR AUC as average precision
(step-wise, as scikit-learn computes it), and log loss.

>>> import random
>>> rng = random.Random(3)
>>> plans = [rng.choice(["pro", "free"]) for _ in range(400)]
>>> rows = [({"plan": p}, rng.random() < (0.7 if p == "pro" else 0.2)) for p in plans]
>>> result = backtest(rows, model=FitModel(min_labels=30))
>>> result.n, result.positives, round(result.roc_auc or 0, 3), round(result.log_loss or 0, 3)
(400, 192, 0.75, 0.569)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from intent_stream.scoring.fit import FitModel

__all__ = ["BacktestResult", "average_precision", "backtest", "log_loss", "roc_auc"]

_EPS = 1e-15


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Exact ROC AUC (tied scores count half); ``None`` when only one class is present.

    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    >>> roc_auc([0.5, 0.5], [False, True])
    0.5
    >>> roc_auc([0.2, 0.9], [True, True]) is None
    True
    """
    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum = 0.0  # sum of the (average, 1-based) ranks of the positives: Mann-Whitney U
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        average_rank = (i + j) / 2.0 + 1.0
        rank_sum += average_rank * sum(1 for k in order[i : j + 1] if labels[k])
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def average_precision(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """PR AUC as average precision: ``sum (R_k - R_{k-1}) P_k`` over distinct thresholds.

    ``None`` when only one class is present.

    >>> average_precision([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.8333333333333333
    >>> average_precision([0.9, 0.8, 0.1], [True, True, False])
    1.0
    """
    positives = sum(1 for y in labels if y)
    if positives == 0 or positives == len(labels):
        return None
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    ap, tp, fp, previous_recall = 0.0, 0, 0, 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in order[i : j + 1]:  # a tie is one threshold: its rows enter together
            if labels[k]:
                tp += 1
            else:
                fp += 1
        recall = tp / positives
        ap += (recall - previous_recall) * tp / (tp + fp)
        previous_recall = recall
        i = j + 1
    return ap


def log_loss(probabilities: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Mean negative log-likelihood (natural log, probabilities clipped to [1e-15, 1-1e-15]).

    >>> round(log_loss([0.5, 0.5], [True, False]), 4)
    0.6931
    >>> log_loss([], []) is None
    True
    """
    if not labels:
        return None
    total = 0.0
    for p, y in zip(probabilities, labels, strict=True):
        p = min(max(p, _EPS), 1.0 - _EPS)
        total -= math.log(p if y else 1.0 - p)
    return total / len(labels)


@dataclass(frozen=True)
class BacktestResult:
    """Progressive-validation metrics; AUCs are ``None`` when the labels have one class."""

    roc_auc: float | None
    pr_auc: float | None
    log_loss: float | None
    n: int
    positives: int
    model: FitModel = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The metrics as ``{"roc_auc", "pr_auc", "log_loss", "n"}`` (the CLI's JSON)."""
        return {
            "roc_auc": self.roc_auc,
            "pr_auc": self.pr_auc,
            "log_loss": self.log_loss,
            "n": self.n,
        }


def backtest(
    rows: Iterable[tuple[Mapping[str, Any], bool]],
    *,
    model: FitModel | None = None,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> BacktestResult:
    """Score each ``(attributes, converted)`` row, then learn it; return the metrics.

    ``model`` defaults to a new :class:`FitModel` and is warmed in place (also returned as
    ``result.model``). ``progress(rows_done)`` is called every ``progress_every`` rows.
    """
    fit = model if model is not None else FitModel()
    probabilities: list[float] = []
    labels: list[bool] = []
    for x, y in rows:
        probabilities.append(fit.predict_proba_one(x))
        fit.learn_one(x, y)
        labels.append(bool(y))
        if progress is not None and len(labels) % progress_every == 0:
            progress(len(labels))
    return BacktestResult(
        roc_auc=roc_auc(probabilities, labels),
        pr_auc=average_precision(probabilities, labels),
        log_loss=log_loss(probabilities, labels),
        n=len(labels),
        positives=sum(labels),
        model=fit,
    )
