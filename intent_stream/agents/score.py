"""The scoring agent: account-keyed events in, account state, alerts and dead letters out.

Thin by design: :class:`intent_stream.pipeline.AccountProcessor` decides everything; this
module only moves bytes between Kafka, the table, Redis and the metrics.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from intent_stream.agents.sinks import observe_send, produce, send_dead_letters
from intent_stream.alerts import cloudevent_headers, event_source
from intent_stream.metrics import Metrics
from intent_stream.pipeline import (
    AccountProcessor,
    BatchRecord,
    DeadLetter,
    RecordResult,
    chunked,
)
from intent_stream.readmodel import model_key
from intent_stream.scoring import (
    CheckpointError,
    FitModel,
    IntentModel,
    ProgressiveValidation,
    dump_checkpoint,
    load_checkpoint,
)
from intent_stream.tables import JsonTable, stage_of

if TYPE_CHECKING:
    from intent_stream.app import Engine

__all__ = ["AGENT", "STAGE_COUNT_INTERVAL", "ModelCheckpointer", "register"]

logger = logging.getLogger(__name__)

#: The agent's name, also its ``agent`` label in ``intent_stream_agent_records_total``.
AGENT = "score-accounts"
#: Seconds between recounts of accounts per stage (a pass over the worker's account table).
STAGE_COUNT_INTERVAL = 5.0


class ModelCheckpointer:
    """Saves the worker's intent and fit models to Redis and restores them at start.

    The intent model is saved with its progressive-validation window (so model health
    survives a restart) under ``{prefix}model:intent:v1``, the fit model under
    ``{prefix}model:fit:v1``; both are :func:`~intent_stream.scoring.dump_checkpoint` blobs.
    Saves happen every ``model_checkpoint_interval`` seconds or ``model_checkpoint_labels``
    labels, whichever comes first, only when something was learned. A failed save is counted
    and retried at the next occasion; a blob that cannot be used is logged and ignored.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.restored = False
        self._saved_labels = (-1, -1)
        self._saved_at = time.monotonic()

    @property
    def processor(self) -> AccountProcessor:
        return self.engine.processor

    def _labels(self) -> tuple[int, int]:
        return self.processor.model.n_labels, self.processor.fit.n_labels

    async def restore(self) -> None:
        """Load the checkpoints once, before the first record is scored."""
        if self.restored:
            return
        self.restored = True
        client, prefix = self.engine.read_model.client, self.engine.settings.redis_prefix
        for kind in ("intent", "fit"):
            try:
                blob = await client.get(model_key(prefix, kind))
            except (RedisError, OSError) as exc:
                logger.warning("cannot read the %s model checkpoint (%s)", kind, type(exc).__name__)
                continue
            if blob is None:
                continue
            try:
                raw = blob.encode() if isinstance(blob, str) else blob
                objects = load_checkpoint(raw, kind)
                self._apply(kind, objects)
            except CheckpointError as exc:
                logger.warning("ignoring the %s model checkpoint: %s; starting fresh", kind, exc)
        self._saved_labels = self._labels()
        _observe_model(self.engine.metrics, self.processor)

    def _apply(self, kind: str, objects: dict[str, Any]) -> None:
        proc = self.processor
        if kind == "intent":
            model, health = objects.get("model"), objects.get("health")
            if not isinstance(model, IntentModel) or not isinstance(health, ProgressiveValidation):
                raise CheckpointError("the intent checkpoint holds other objects")
            # The blend's cap is this deployment's setting, not learned state.
            model.max_blend = self.engine.settings.intent_max_blend
            proc.model, proc.health = model, health
            logger.info("restored the intent model (%d labels)", model.n_labels)
            return
        fit = objects.get("model")
        if not isinstance(fit, FitModel):
            raise CheckpointError("the fit checkpoint holds another object")
        # The checkpoint started from the fit file and learned more; a file retrained on
        # more rows than it holds wins.
        if fit.n_labels >= proc.fit.n_labels:
            proc.fit = fit
            logger.info("restored the fit model (%d labels)", fit.n_labels)

    def due(self) -> bool:
        """Whether enough labels arrived since the last save to save now."""
        saved = self._saved_labels
        labels = self._labels()
        every = self.engine.settings.model_checkpoint_labels
        return labels[0] - saved[0] >= every or labels[1] - saved[1] >= every

    async def save(self, *, force: bool = False) -> bool:
        """Write the checkpoints if anything was learned since the last save."""
        labels = self._labels()
        if labels == self._saved_labels and not force:
            return False
        proc, settings = self.processor, self.engine.settings
        client, metrics = self.engine.read_model.client, self.engine.metrics
        intent = dump_checkpoint("intent", {"model": proc.model, "health": proc.health})
        fit = dump_checkpoint("fit", {"model": proc.fit})
        try:
            pipe = client.pipeline(transaction=False)
            pipe.set(model_key(settings.redis_prefix, "intent"), intent)
            pipe.set(model_key(settings.redis_prefix, "fit"), fit)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            metrics.model_checkpoints.labels(outcome="failed").inc()
            logger.warning("model checkpoint failed (%s); retrying later", type(exc).__name__)
            return False
        metrics.model_checkpoints.labels(outcome="saved").inc()
        self._saved_labels, self._saved_at = labels, time.monotonic()
        logger.info("checkpointed the models (%d intent labels, %d fit labels)", *labels)
        return True


def register(engine: Engine) -> None:
    app, topics, metrics = engine.app, engine.topics, engine.metrics
    checkpointer = ModelCheckpointer(engine)
    _observe_model(metrics, engine.processor)

    settings = engine.settings
    batch_records, batch_wait = settings.score_batch_records, settings.score_batch_wait_ms / 1e3
    batch_bytes = settings.score_batch_bytes

    @app.agent(topics.events, name=AGENT)  # type: ignore[untyped-decorator]
    async def score_accounts(stream: Any) -> None:
        await checkpointer.restore()  # before the first label could be learned
        # Records that arrived together are applied together: each account they touch is
        # updated, scored and written once (see AccountProcessor.process_batch). Under a
        # backlog that is many records per update; when records trickle in, a batch is
        # what arrived within batch_wait.
        async for events in stream.take_events(batch_records, within=batch_wait):
            records = [(e.value, e.message.partition, e.message.offset) for e in events]
            # A batch's decoded events are bounded by its bytes, whatever its records hold.
            done = 0
            for run in chunked(records, batch_bytes):
                messages = [event.message for event in events[done : done + len(run)]]
                done += len(run)
                await _apply(engine, checkpointer, run, messages)

    health_seen = [-1]

    @app.timer(engine.settings.redis_flush_interval)  # type: ignore[untyped-decorator]
    async def count_accounts() -> None:
        metrics.accounts.set(len(engine.accounts))
        # AUC over the window costs O(window log window): once per interval, not per label.
        health = engine.processor.health
        if health.n != health_seen[0]:
            health_seen[0] = health.n
            auc, loss = health.roc_auc(), health.log_loss()
            metrics.model_roc_auc.set(math.nan if auc is None else auc)
            metrics.model_log_loss.set(math.nan if loss is None else loss)

    @app.timer(engine.settings.model_checkpoint_interval)  # type: ignore[untyped-decorator]
    async def checkpoint_models() -> None:
        if checkpointer.restored:
            await checkpointer.save()

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def final_checkpoint(app: Any, **kwargs: Any) -> None:
        if checkpointer.restored:
            await checkpointer.save()

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def stop_alerts_out(app: Any, **kwargs: Any) -> None:
        # After the consumer's final commit, which flushed it (create_app's commit hook).
        await engine.alerts_out.stop()

    stages = engine.processor.stages
    if stages is not None:
        metrics.init_stages(
            [s.name for s in stages.model.stages], stages.model.possible_transitions()
        )

        @app.timer(STAGE_COUNT_INTERVAL)  # type: ignore[untyped-decorator]
        async def count_stages() -> None:
            _count_stages(metrics, engine.accounts, [s.name for s in stages.model.stages])


def _count_stages(metrics: Metrics, accounts: JsonTable, names: list[str]) -> None:
    """Accounts per stage, recounted from the table (exact after rebalances and restarts)."""
    counts = dict.fromkeys(names, 0)
    for value in accounts.raw.values():
        stage = stage_of(value)
        if stage in counts:
            counts[stage] += 1
    for name, n in counts.items():
        metrics.stage_accounts.labels(stage=name).set(n)


def _observe_model(metrics: Metrics, processor: AccountProcessor) -> None:
    model = processor.model
    metrics.child(metrics.model_labels, "positive").set(model.n_positive)
    metrics.child(metrics.model_labels, "negative").set(model.n_labels - model.n_positive)
    metrics.model_blend.set(model.blend)


async def _apply(
    engine: Engine,
    checkpointer: ModelCheckpointer,
    records: Sequence[BatchRecord],
    messages: list[Any],
) -> None:
    """Apply a batch of account-topic records, send what it produced, count it."""
    metrics = engine.metrics
    started = time.perf_counter()
    result = engine.processor.process_batch(engine.accounts, records)
    await _publish(engine, result, messages)
    metrics.score_batch_seconds.observe(time.perf_counter() - started)
    metrics.score_batch_records.observe(len(messages))
    now = time.time()
    metrics.records_processed.inc(len(messages))
    metrics.child(metrics.agent_records, AGENT).inc(len(messages))
    for message in messages:
        metrics.record_latency.observe(max(0.0, now - message.timestamp))
    for view in result.snapshots.values():
        metrics.score_latency.observe(max(0.0, now - view.event_time))
    if result.labels and checkpointer.due():
        await checkpointer.save()


async def _publish(engine: Engine, result: RecordResult, messages: list[Any]) -> None:
    """Send and count what a batch of ``messages`` produced.

    Alerts go to their own producer, without linger (``PromptProducer``); transitions
    straight to Faust's (``produce``); both keyed by account: Faust's ``Topic.send`` would
    wrap each in a message, a future and a callback."""
    metrics, settings = engine.metrics, engine.settings
    source = event_source(settings.app_id)
    for alert in result.alerts:
        event_time = result.snapshots[alert.account_id].event_time

        def delivered(event_time: float = event_time) -> None:
            metrics.alert_latency.observe(max(0.0, time.time() - event_time))

        await observe_send(
            engine.alerts_out.send(
                settings.alerts_topic,
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
        metrics.child(metrics.alerts_published, alert.rule).inc()
        if alert.interval is not None:
            metrics.alert_interval.observe(max(0.0, alert.interval))
        logger.info("alert %s (%s) for account %s", alert.alert_id, alert.rule, alert.account_id)
    for (rule, outcome), n in result.alert_triggers.items():
        metrics.child(metrics.alert_triggers, rule, outcome).inc(n)
    await _publish_transitions(engine, result)
    by_record: dict[int, list[DeadLetter]] = {}
    for letter in result.dead_letters:
        by_record.setdefault(letter.record, []).append(letter)
    for index, letters in by_record.items():
        await send_dead_letters(engine, letters, messages[index])
    for kind, n in result.applied.items():
        metrics.child(metrics.events_processed, kind).inc(n)
    for signal, n in result.signals.items():
        metrics.child(metrics.signals, signal).inc(n)
    metrics.count_marketing(result.marketing)
    for outcome, n in result.labels.items():
        metrics.child(metrics.labels_learned, outcome).inc(n)
    if result.labels:
        _observe_model(metrics, engine.processor)
    if result.surges:
        metrics.topic_surges.inc(result.surges)
    if result.skipped:
        metrics.events_skipped.inc(result.skipped)
    if result.snapshots:
        engine.read_model.update(result.snapshots)
    if result.refreshed:
        engine.read_model.update(result.refreshed)


async def _publish_transitions(engine: Engine, result: RecordResult) -> None:
    """Send stage transitions, keyed by account, in the order they were made."""
    metrics = engine.metrics
    for transition in result.transitions:
        await observe_send(
            produce(
                engine,
                engine.settings.transitions_topic,
                key=transition.account_id.encode(),
                value=orjson.dumps(transition.to_payload()),
                headers=[("transition_id", transition.transition_id.encode())],
            ),
            metrics=metrics,
            topic="transitions",
        )
        frm = transition.from_stage or "none"
        metrics.child(metrics.stage_transitions, frm, transition.to_stage).inc()
        if transition.from_stage is not None and transition.seconds_in_previous is not None:
            metrics.child(metrics.time_in_stage, transition.from_stage).observe(
                transition.seconds_in_previous
            )
