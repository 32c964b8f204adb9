"""intent_stream: a streaming B2B intent-signal engine.

Events from website trackers, marketing automation, CRM and product telemetry flow through
Kafka; Faust agents keep per-account state, score buying intent with online River models on
every event, and publish hot leads with their reasons to the sales-alerts topic.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
