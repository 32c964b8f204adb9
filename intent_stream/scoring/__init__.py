"""Pure scoring: River-shaped objects with no Kafka, Faust or Redis imports."""

from __future__ import annotations

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
    "DEFAULT_SIGNALS",
    "HIGH_INTENT",
    "OUTCOMES",
    "AccountSignals",
    "HotLeadPolicy",
    "IntentModel",
    "PointsPrior",
    "PolicyState",
    "Reason",
    "SignalSpec",
    "alert_id",
    "classify",
]
