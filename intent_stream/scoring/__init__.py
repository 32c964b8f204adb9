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
from intent_stream.scoring.stages import (
    StageConfigError,
    StageMachine,
    StageModel,
    StageState,
    StageTransition,
    default_stage_model,
    load_stage_model,
    parse_stage_model,
    transition_id,
)
from intent_stream.scoring.surge import TopicSurge, normalise_topic
from intent_stream.scoring.transitions import TransitionModel

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
    "StageConfigError",
    "StageMachine",
    "StageModel",
    "StageState",
    "StageTransition",
    "TopicSurge",
    "TransitionModel",
    "alert_id",
    "average_precision",
    "backtest",
    "classify",
    "default_stage_model",
    "dump_checkpoint",
    "fit_band",
    "fit_traits",
    "load_checkpoint",
    "load_fit_model",
    "load_stage_model",
    "log_loss",
    "normalise_topic",
    "parse_stage_model",
    "roc_auc",
    "save_fit_model",
    "topic_of",
    "transition_id",
]
