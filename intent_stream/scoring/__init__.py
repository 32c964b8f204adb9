"""Pure scoring: River-shaped objects with no Kafka, Faust or Redis imports."""

from __future__ import annotations

from intent_stream.scoring.backtest import (
    BacktestResult,
    average_precision,
    backtest,
    log_loss,
    roc_auc,
)
from intent_stream.scoring.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    dump_checkpoint,
    load_checkpoint,
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
from intent_stream.scoring.health import ProgressiveValidation
from intent_stream.scoring.intent import IntentModel, PointsPrior, Reason
from intent_stream.scoring.labels import DelayedLabels, Labelled
from intent_stream.scoring.policy import HotLeadPolicy, PolicyState, alert_id
from intent_stream.scoring.signals import (
    DEFAULT_SIGNALS,
    FEATURES,
    FIT_TRAITS,
    HIGH_INTENT,
    OUTCOMES,
    AccountSignals,
    SignalSpec,
    classify,
    fit_traits,
    topic_of,
)
from intent_stream.scoring.surge import TopicSurge, normalise_topic

__all__ = [
    "BAND_MODERATE",
    "BAND_STRONG",
    "CHECKPOINT_VERSION",
    "DEFAULT_SIGNALS",
    "FEATURES",
    "FIT_TRAITS",
    "HIGH_INTENT",
    "OUTCOMES",
    "AccountSignals",
    "BacktestResult",
    "CheckpointError",
    "DelayedLabels",
    "FitBand",
    "FitModel",
    "FitModelError",
    "HotLeadPolicy",
    "IntentModel",
    "Labelled",
    "PointsPrior",
    "PolicyState",
    "ProgressiveValidation",
    "Reason",
    "SignalSpec",
    "TopicSurge",
    "alert_id",
    "average_precision",
    "backtest",
    "classify",
    "dump_checkpoint",
    "fit_band",
    "fit_traits",
    "load_checkpoint",
    "load_fit_model",
    "log_loss",
    "normalise_topic",
    "roc_auc",
    "save_fit_model",
    "topic_of",
]
