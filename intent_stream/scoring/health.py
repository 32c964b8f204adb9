"""Model health by progressive validation: each label is predicted before it is learned.

:class:`ProgressiveValidation` keeps the last ``window`` (prediction, label) pairs and computes
the exact ROC AUC and log loss over them (the functions of :mod:`.backtest`), so the figures
describe the model as it scores today, not its whole history. Computing costs
O(window log window); callers do it on a timer, not per label.

>>> health = ProgressiveValidation(window=4)
>>> for p, y in [(0.9, True), (0.2, False), (0.7, True), (0.4, False), (0.6, False)]:
...     health.update(p, y)
>>> health.n, health.roc_auc(), round(health.log_loss() or 0, 3)
(5, 1.0, 0.502)
"""

from __future__ import annotations

from collections import deque
from typing import Any

from intent_stream.scoring.backtest import log_loss, roc_auc

__all__ = ["ProgressiveValidation"]


class ProgressiveValidation:
    """ROC AUC and log loss of the last ``window`` predictions made before learning."""

    def __init__(self, *, window: int = 2000) -> None:
        self.window = window
        self.pairs: deque[tuple[float, bool]] = deque(maxlen=window)
        self.n = 0
        self.n_positive = 0

    def update(self, probability: float, label: bool) -> None:
        """Record a prediction made before ``label`` was learned."""
        self.pairs.append((min(1.0, max(0.0, probability)), bool(label)))
        self.n += 1
        self.n_positive += int(bool(label))

    def roc_auc(self) -> float | None:
        """Exact ROC AUC over the window; ``None`` until both classes are in it."""
        return roc_auc([p for p, _ in self.pairs], [y for _, y in self.pairs])

    def log_loss(self) -> float | None:
        """Mean log loss over the window; ``None`` before any label."""
        return log_loss([p for p, _ in self.pairs], [y for _, y in self.pairs])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "pairs": list(self.pairs)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["pairs"] = deque(state.get("pairs", ()), maxlen=state.get("window", 2000))
        state.setdefault("n_positive", 0)
        self.__dict__.update(state)
