"""Pure scoring: River-shaped objects with no Kafka, Faust or Redis imports."""

from __future__ import annotations

from intent_stream.scoring.backtest import (
    BacktestResult,
    average_precision,
    backtest,
    log_loss,
    roc_auc,
)
from intent_stream.scoring.fit import (
    BAND_MODERATE,
    BAND_STRONG,
    FitBand,
    FitModel,
    FitModelError,
    fit_band,
    load_fit_model,
    save_fit_model,
)
from intent_stream.scoring.intent import IntentModel, PointsPrior, Reason
from intent_stream.scoring.policy import HotLeadPolicy, PolicyState, alert_id
from intent_stream.scoring.signals import (
    DEFAULT_SIGNALS,
    HIGH_INTENT,
    OUTCOMES,
    AccountSignals,
    SignalSpec,
    classify,
)

__all__ = [
    "BAND_MODERATE",
    "BAND_STRONG",
    "DEFAULT_SIGNALS",
    "HIGH_INTENT",
    "OUTCOMES",
    "AccountSignals",
    "BacktestResult",
    "FitBand",
    "FitModel",
    "FitModelError",
    "HotLeadPolicy",
    "IntentModel",
    "PointsPrior",
    "PolicyState",
    "Reason",
    "SignalSpec",
    "alert_id",
    "average_precision",
    "backtest",
    "classify",
    "fit_band",
    "load_fit_model",
    "log_loss",
    "roc_auc",
    "save_fit_model",
]
