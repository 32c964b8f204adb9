"""The scoring agent: account-keyed events in, account state, alerts and dead letters out.

Thin by design: :class:`intent_stream.pipeline.AccountProcessor` decides everything; this
module only moves bytes between Kafka, the table, Redis and the metrics.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from intent_stream.alerts import cloudevent_headers, event_source
from intent_stream.pipeline import RecordResult

if TYPE_CHECKING:
    from intent_stream.app import Engine

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(engine: Engine) -> None:
    app, topics, metrics = engine.app, engine.topics, engine.metrics

    @app.agent(topics.events, name="score-accounts")  # type: ignore[untyped-decorator]
    async def score_accounts(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            result = engine.processor.process(
                engine.accounts,
                value=event.value,
                partition=message.partition,
                offset=message.offset,
            )
            await _publish(engine, result, message)
            metrics.records_processed.inc()
            metrics.record_latency.observe(max(0.0, time.time() - message.timestamp))

    @app.timer(engine.settings.redis_flush_interval)  # type: ignore[untyped-decorator]
    async def flush_read_model() -> None:
        await engine.read_model.flush()
        metrics.accounts.set(len(engine.accounts))

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def final_flush(app: Any, **kwargs: Any) -> None:
        await engine.read_model.flush()


async def _publish(engine: Engine, result: RecordResult, message: Any) -> None:
    metrics, topics = engine.metrics, engine.topics
    source = event_source(engine.settings.app_id)
    for alert in result.alerts:
        await topics.alerts.send(
            key=alert.account_id.encode(),
            value=alert.value,
            # CloudEvents binary mode (ce_* headers) plus the alert_id header, read from the
            # payload so that any rule's alert gets its own ce_type.
            headers=cloudevent_headers(orjson.loads(alert.value), source=source),
        )
        metrics.alerts_published.labels(rule="intent_threshold").inc()
        logger.info("alert %s for account %s", alert.alert_id, alert.account_id)
    for dead in result.dead_letters:
        await topics.dlq.send(
            key=message.key,
            value=dead.value,
            headers=[
                ("dlq.reason", dead.reason.encode()),
                ("dlq.detail", dead.detail.encode()),
                ("dlq.topic", message.topic.encode()),
                ("dlq.partition", str(message.partition).encode()),
                ("dlq.offset", str(message.offset).encode()),
            ],
        )
        metrics.dead_letters.labels(reason=dead.reason).inc()
    if result.dead_letters:
        logger.warning(
            "dead-lettered %d item(s) from %s[%d]@%d: %s",
            len(result.dead_letters),
            message.topic,
            message.partition,
            message.offset,
            ", ".join(sorted({d.reason for d in result.dead_letters})),
        )
    for kind, n in result.applied.items():
        metrics.events_processed.labels(type=kind).inc(n)
    for outcome, n in result.labels.items():
        metrics.labels_learned.labels(outcome=outcome).inc(n)
    if result.skipped:
        metrics.events_skipped.inc(result.skipped)
    if result.snapshots:
        engine.read_model.update(result.snapshots)
