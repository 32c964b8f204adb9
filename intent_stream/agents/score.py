"""The scoring agent: account-keyed events in, account state, alerts and dead letters out.

Thin by design: :class:`intent_stream.pipeline.AccountProcessor` decides everything; this
module only moves bytes between Kafka, the table, Redis and the metrics.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from intent_stream.agents.sinks import observe_send, send_dead_letters
from intent_stream.alerts import cloudevent_headers, event_source
from intent_stream.metrics import Metrics
from intent_stream.pipeline import RecordResult
from intent_stream.scoring import IntentModel

if TYPE_CHECKING:
    from intent_stream.app import Engine

__all__ = ["AGENT", "STAGE_COUNT_INTERVAL", "register"]

logger = logging.getLogger(__name__)

#: The agent's name, also its ``agent`` label in ``intent_stream_agent_records_total``.
AGENT = "score-accounts"
#: Seconds between recounts of accounts per stage (a pass over the worker's account table).
STAGE_COUNT_INTERVAL = 5.0


def register(engine: Engine) -> None:
    app, topics, metrics = engine.app, engine.topics, engine.metrics
    _observe_model(metrics, engine.processor.model)

    @app.agent(topics.events, name=AGENT)  # type: ignore[untyped-decorator]
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
            now = time.time()
            metrics.records_processed.inc()
            metrics.agent_records.labels(agent=AGENT).inc()
            metrics.record_latency.observe(max(0.0, now - message.timestamp))
            for view in result.snapshots.values():
                metrics.score_latency.observe(max(0.0, now - view.event_time))

    @app.timer(engine.settings.redis_flush_interval)  # type: ignore[untyped-decorator]
    async def count_accounts() -> None:
        metrics.accounts.set(len(engine.accounts))

    stages = engine.processor.stages
    if stages is not None:
        metrics.init_stages(
            [s.name for s in stages.model.stages], stages.model.possible_transitions()
        )

        @app.timer(STAGE_COUNT_INTERVAL)  # type: ignore[untyped-decorator]
        async def count_stages() -> None:
            _count_stages(metrics, engine.accounts, [s.name for s in stages.model.stages])


def _count_stages(metrics: Metrics, accounts: Any, names: list[str]) -> None:
    """Accounts per stage, recounted from the table (exact after rebalances and restarts)."""
    counts = dict.fromkeys(names, 0)
    for state in accounts.values():
        stage = state.get("stage") if state else None
        if stage is not None and stage["s"] in counts:
            counts[stage["s"]] += 1
    for name, n in counts.items():
        metrics.stage_accounts.labels(stage=name).set(n)


def _observe_model(metrics: Metrics, model: IntentModel) -> None:
    metrics.model_labels.labels(polarity="positive").set(model.n_positive)
    metrics.model_labels.labels(polarity="negative").set(model.n_labels - model.n_positive)
    metrics.model_blend.set(model.blend)


async def _publish(engine: Engine, result: RecordResult, message: Any) -> None:
    metrics, topics = engine.metrics, engine.topics
    source = event_source(engine.settings.app_id)
    for alert in result.alerts:
        event_time = result.snapshots[alert.account_id].event_time

        def delivered(event_time: float = event_time) -> None:
            metrics.alert_latency.observe(max(0.0, time.time() - event_time))

        await observe_send(
            topics.alerts.send(
                key=alert.account_id.encode(),
                value=alert.value,
                # CloudEvents binary mode (ce_* headers) plus the alert_id header, read from
                # the payload so that any rule's alert gets its own ce_type.
                headers=cloudevent_headers(orjson.loads(alert.value), source=source),
            ),
            metrics=metrics,
            topic="alerts",
            on_delivered=delivered,
        )
        metrics.alerts_published.labels(rule="intent_threshold").inc()
        logger.info("alert %s for account %s", alert.alert_id, alert.account_id)
    await _publish_transitions(engine, result)
    await send_dead_letters(engine, result.dead_letters, message)
    for kind, n in result.applied.items():
        metrics.events_processed.labels(type=kind).inc(n)
    for signal, n in result.signals.items():
        metrics.signals.labels(signal=signal).inc(n)
    for outcome, n in result.labels.items():
        metrics.labels_learned.labels(outcome=outcome).inc(n)
    if result.labels:
        _observe_model(metrics, engine.processor.model)
    if result.skipped:
        metrics.events_skipped.inc(result.skipped)
    if result.snapshots:
        engine.read_model.update(result.snapshots)


async def _publish_transitions(engine: Engine, result: RecordResult) -> None:
    """Send stage transitions, keyed by account, in the order they were made."""
    metrics = engine.metrics
    for transition in result.transitions:
        await observe_send(
            engine.topics.transitions.send(
                key=transition.account_id.encode(),
                value=orjson.dumps(transition.to_payload()),
                headers=[("transition_id", transition.transition_id.encode())],
            ),
            metrics=metrics,
            topic="transitions",
        )
        frm = transition.from_stage or "none"
        metrics.stage_transitions.labels(**{"from": frm, "to": transition.to_stage}).inc()
        if transition.from_stage is not None and transition.seconds_in_previous is not None:
            metrics.time_in_stage.labels(stage=transition.from_stage).observe(
                transition.seconds_in_previous
            )
