"""Every Prometheus metric the engine exports, in one registry-injected bundle.

Names follow ``intent_stream_<thing>_<unit>``; counters end in ``_total``; durations are
``_seconds`` histograms. Labels never carry account ids, emails or other unbounded values:
every label below takes its values from a fixed set (call types, dead-letter reasons, signal
names, rules, outcomes, agent names, topic roles, marketing channels and content types), or,
for the ``campaign`` label, from a set :class:`~intent_stream.marketing.CampaignLabels` bounds.

Faust's own sensor figures (consumer, producer, commits, rebalances, tables) are registered
on the same registry under ``intent_stream_faust_``, so one ``/metrics`` serves both.

>>> from prometheus_client import CollectorRegistry
>>> m = Metrics(CollectorRegistry())
>>> m.events_processed.labels(type="track").inc()
>>> b"intent_stream_events_processed_total" in m.exposition()
True
>>> b"intent_stream_faust_messages_received_total" in m.exposition()
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from intent_stream.marketing import CampaignLabels

__all__ = [
    "AGENTS",
    "ALERT_OUTCOMES",
    "ALERT_RULES",
    "CONTENT_TYPE",
    "FAUST_PREFIX",
    "PRODUCE_TOPICS",
    "FaustMonitor",
    "Metrics",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)
#: Marketing children kept by their raw (not yet bounded) label values before the cache is
#: emptied: campaign names are free text, the cache must not grow with them.
_MARKETING_CACHE = 4096

#: Prefix of Faust's sensor metrics. Fixed, not the app id: dashboards and alert rules must
#: not depend on the consumer-group name a deployment picks.
FAUST_PREFIX = "intent_stream_faust"
#: Agents that count records in ``intent_stream_agent_records_total{agent}``; initialised to
#: zero so a dashboard shows a flat line, not "no data", before the first record.
AGENTS = ("ingest", "score-accounts")
#: Logical roles of the topics the agents produce to (``topic`` label of produce errors).
PRODUCE_TOPICS = ("alerts", "dlq", "events", "identity", "transitions")
#: Alert rules (``intent_stream.scoring.RULES``, not imported here: it loads River) and what
#: became of a rule that fired (``intent_stream_alert_triggers_total{rule,outcome}``).
ALERT_RULES = ("intent_threshold", "stage_entry", "topic_surge")
ALERT_OUTCOMES = ("alerted", "cooldown", "weak_fit", "low_intent")
# Event time between two alerts of one account: an hour to a quarter.
_ALERT_INTERVAL_BUCKETS = tuple(
    h * 3600.0 for h in (1, 6, 12, 24, 48, 72, 7 * 24, 14 * 24, 30 * 24, 90 * 24)
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# Event time is set by the tracker; events arrive late (offline devices, batch imports,
# backfills), so these run from sub-second to a day.
_EVENT_TIME_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4 * 3600.0,
    86400.0,
)
# Time in a journey stage, in event time: an hour to a year.
_STAGE_BUCKETS = tuple(d * 86400.0 for d in (1 / 24, 0.25, 1, 3, 7, 14, 30, 60, 90, 180, 365))
# Collector answers wait for the broker's acknowledgement: a few milliseconds when healthy.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The engine's metrics, registered on ``registry`` (a fresh one per worker or test)."""

    def __init__(
        self, registry: CollectorRegistry, *, campaigns: CampaignLabels | None = None
    ) -> None:
        self.registry = registry
        # Labelled children by (metric, label values): see child().
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        # marketing_signals children by the raw (signal, channel, campaign, content type).
        self._marketing: dict[tuple[str, str, str, str], Counter] = {}
        #: Bounds the ``campaign`` label of :attr:`marketing_signals` (see count_marketing).
        self.campaigns = campaigns if campaigns is not None else CampaignLabels()
        p = "intent_stream_"
        self.records_processed = Counter(
            p + "records_processed_total",
            "Kafka records taken from the event topic (a record may carry many events).",
            registry=registry,
        )
        self.agent_records = Counter(
            p + "agent_records_total",
            "Kafka records each agent finished processing (throughput per agent).",
            ["agent"],
            registry=registry,
        )
        self.events_processed = Counter(
            p + "events_processed_total",
            "Events applied to account state, by Segment call type.",
            ["type"],
            registry=registry,
        )
        self.signals = Counter(
            p + "signals_total",
            "Intent signals recognised in applied events, by signal (page and track events).",
            ["signal"],
            registry=registry,
        )
        # No series is started at zero: channel x content type x signal would be thousands.
        self.marketing_signals = Counter(
            p + "marketing_signals_total",
            "Intent signals by signal, marketing channel, campaign (bounded: allowlist and "
            "first N distinct, then 'other') and content type (README: Marketing view).",
            ["signal", "channel", "campaign", "content_type"],
            registry=registry,
        )
        self.events_skipped = Counter(
            p + "events_skipped_total",
            "Events skipped because their record was already applied (replay after a restart).",
            registry=registry,
        )
        self.records_refilled = Counter(
            p + "records_refilled_total",
            "Records a consumer fetch skipped, read again and delivered in order before the "
            "record after them (README: Guarantees).",
            registry=registry,
        )
        self.dead_letters = Counter(
            p + "dead_letters_total",
            "Records or events sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.alerts_published = Counter(
            p + "alerts_published_total",
            "Hot-lead alerts published to the sales-alerts topic, by primary rule (the first "
            "of intent_threshold, stage_entry, topic_surge that fired).",
            ["rule"],
            registry=registry,
        )
        self.alert_triggers = Counter(
            p + "alert_triggers_total",
            "Alert rules that fired for an account, by rule and outcome: alerted (in a "
            "published alert, alone or with other rules), cooldown (held back: the account "
            "had an alert within alert_cooldown), weak_fit (held back by fit gating) or "
            "low_intent (a surge below alert_surge_min_score).",
            ["rule", "outcome"],
            registry=registry,
        )
        self.alert_interval = Histogram(
            p + "alert_interval_seconds",
            "Event-time seconds between an account's alert and its previous alert (not "
            "observed for first alerts): alert fatigue as the scorer decides it.",
            buckets=_ALERT_INTERVAL_BUCKETS,
            registry=registry,
        )
        for rule in ALERT_RULES:
            self.alerts_published.labels(rule=rule)
            for outcome in ALERT_OUTCOMES:
                self.alert_triggers.labels(rule=rule, outcome=outcome)
        self.labels_learned = Counter(
            p + "labels_learned_total",
            "Delayed labels the intent model learned, by what labelled them: opportunity, won "
            "(positive), lost, expired (negative: the horizon passed without an outcome).",
            ["outcome"],
            registry=registry,
        )
        self.model_labels = Gauge(
            p + "model_labels",
            "Labels the intent model of this worker holds, by polarity (positive/negative).",
            ["polarity"],
            registry=registry,
        )
        self.model_roc_auc = Gauge(
            p + "model_roc_auc",
            "Progressive-validation ROC AUC of the intent score over the last labels (each "
            "predicted before it was learned); NaN until both classes have been seen.",
            registry=registry,
        )
        self.model_log_loss = Gauge(
            p + "model_log_loss",
            "Progressive-validation log loss of the intent score (score / 100 as the "
            "probability) over the last labels; NaN before the first label.",
            registry=registry,
        )
        self.model_roc_auc.set(float("nan"))
        self.model_log_loss.set(float("nan"))
        self.model_checkpoints = Counter(
            p + "model_checkpoints_total",
            "Model checkpoints written to Redis, by outcome (saved or failed).",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("saved", "failed"):
            self.model_checkpoints.labels(outcome=outcome)
        self.topic_surges = Counter(
            p + "topic_surges_total",
            "Times an account's interest in a content topic started to surge (surge score "
            "reached 60 against the account's own 12-week baseline). No topic label: topics "
            "are unbounded.",
            registry=registry,
        )
        self.model_blend = Gauge(
            p + "model_blend_ratio",
            "Weight of the learned model in the intent score (0 = points prior only, up to "
            "intent_max_blend).",
            registry=registry,
        )
        self.record_latency = Histogram(
            p + "record_latency_seconds",
            "Seconds from a record's Kafka timestamp to the end of its processing.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.score_batch_seconds = Histogram(
            p + "score_batch_seconds",
            "Seconds the scoring agent takes to apply a batch of records and send what it "
            "produced.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.score_batch_records = Histogram(
            p + "score_batch_records",
            "Records per batch the scoring agent applies (up to score_batch_records; larger "
            "under a backlog).",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.score_latency = Histogram(
            p + "score_latency_seconds",
            "Seconds from an account's newest event time to its new score (one per account "
            "and record).",
            buckets=_EVENT_TIME_BUCKETS,
            registry=registry,
        )
        self.alert_latency = Histogram(
            p + "alert_latency_seconds",
            "Seconds from the event time that triggered an alert to the broker acknowledging "
            "the alert.",
            buckets=_EVENT_TIME_BUCKETS,
            registry=registry,
        )
        self.produce_errors = Counter(
            p + "produce_errors_total",
            "Sends to Kafka that failed, by topic role (alerts, dlq, events, identity, "
            "transitions).",
            ["topic"],
            registry=registry,
        )
        self.accounts = Gauge(
            p + "accounts",
            "Accounts held in this worker's state tables.",
            registry=registry,
        )
        self.redis_writes = Counter(
            p + "redis_writes_total",
            "Account snapshots written to the Redis read model.",
            registry=registry,
        )
        self.redis_errors = Counter(
            p + "redis_errors_total",
            "Failed Redis flushes (the changed accounts are kept and retried).",
            registry=registry,
        )
        self.redis_pending = Gauge(
            p + "redis_pending_accounts",
            "Changed accounts (and identity entries) waiting to be written to Redis.",
            registry=registry,
        )
        # Journey stages. ``stage``, ``from`` and ``to`` take the configured stage names (a
        # config holds at most 20) and "none" (a new account's from).
        self.stage_accounts = Gauge(
            p + "stage_accounts",
            "Accounts in each journey stage, in this worker's state table.",
            ["stage"],
            registry=registry,
        )
        self.stage_transitions = Counter(
            p + "stage_transitions_total",
            "Journey stage transitions published, by from and to stage.",
            ["from", "to"],
            registry=registry,
        )
        self.time_in_stage = Histogram(
            p + "time_in_stage_seconds",
            "Event-time seconds an account spent in a stage, observed when it leaves it.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        # Faust's sensor metrics (see faust.sensors.prometheus), fed by a PrometheusMonitor
        # that intent_stream.app installs as the app's monitor.
        self.faust = FaustMetrics.create(registry, FAUST_PREFIX)
        for agent in AGENTS:
            self.agent_records.labels(agent=agent)
        for topic in PRODUCE_TOPICS:
            self.produce_errors.labels(topic=topic)
        for polarity in ("positive", "negative"):
            self.model_labels.labels(polarity=polarity)

        # -- ingestion and identity ------------------------------------------------------
        self.ingest_records = Counter(
            p + "ingest_records_total",
            "Kafka records taken from the raw topic by the ingest agent.",
            registry=registry,
        )
        self.ingest_messages = Counter(
            p + "ingest_messages_total",
            "Raw messages that passed validation, by Segment call type.",
            ["type"],
            registry=registry,
        )
        self.ingest_duplicates = Counter(
            p + "ingest_duplicates_total",
            "Messages dropped because their messageId was seen within the de-duplication window.",
            registry=registry,
        )
        self.ingest_forwarded = Counter(
            p + "ingest_forwarded_records_total",
            "Records written to the account-keyed event topic by the ingest agent.",
            registry=registry,
        )
        self.pending_events = Counter(
            p + "pending_events_total",
            "Anonymous visitors' events by what happened to them: pended (waiting for "
            "identification), released (attributed to an account) or expired.",
            ["outcome"],
            registry=registry,
        )
        self.identity_edges = Counter(
            p + "identity_edges_total",
            "Identity edges learned by this worker, by kind (person or account).",
            ["kind"],
            registry=registry,
        )
        self.identity_nodes = Gauge(
            p + "identity_nodes",
            "Cookies and people held in this worker's identity graph.",
            registry=registry,
        )
        self.dedup_errors = Counter(
            p + "dedup_errors_total",
            "Failed de-duplication lookups in Redis (messages were let through).",
            registry=registry,
        )

        # -- alert forwarder (``intent-stream alerts forward``, its own process) ----------
        self.webhook_deliveries = Counter(
            p + "webhook_deliveries_total",
            "Alerts the forwarder finished with, by outcome: delivered (2xx), duplicate "
            "(already delivered, skipped) or dead_lettered (refused, sent to the alerts DLQ).",
            ["outcome"],
            registry=registry,
        )
        self.webhook_failures = Counter(
            p + "webhook_failures_total",
            "Failed webhook attempts, by kind: timeout, connection, http_408, http_429 and "
            "http_5xx are retried; http_4xx and http_other are dead-lettered.",
            ["kind"],
            registry=registry,
        )
        self.webhook_request_seconds = Histogram(
            p + "webhook_request_seconds",
            "Seconds per webhook POST, whatever its outcome.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.alerts_per_account_day = Histogram(
            p + "alerts_per_account_day",
            "At each delivered alert, how many alerts its account has had that UTC day (event "
            "time), this one included: the share above 1 measures alert fatigue.",
            buckets=(1, 2, 3, 5, 10, 20),
            registry=registry,
        )
        self.forwarder_redis_errors = Counter(
            p + "forwarder_redis_errors_total",
            "Failed Redis calls of the forwarder (de-duplication; retried with back-off).",
            registry=registry,
        )

        # The HTTP collector. ``endpoint`` is one of the collector's route names (or "other")
        # and ``status`` an HTTP status code, so both label sets stay small.
        self.collector_requests = Counter(
            p + "collector_requests_total",
            "HTTP requests the collector answered, by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.collector_events = Counter(
            p + "collector_events_total",
            "Events the collector accepted and the broker acknowledged, by Segment call type.",
            ["type"],
            registry=registry,
        )
        self.collector_records = Counter(
            p + "collector_records_total",
            "Kafka records the collector wrote to the raw topic (one per partition per request).",
            registry=registry,
        )
        self.collector_request_latency = Histogram(
            p + "collector_request_latency_seconds",
            "Seconds from a collector request's arrival to its answer (broker ack included).",
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )

    def init_stages(self, stages: Iterable[str], transitions: Iterable[tuple[str, str]]) -> None:
        """Start the stage series at zero, so panels and rates see them move from the start."""
        for stage in stages:
            self.stage_accounts.labels(stage=stage)
            self.time_in_stage.labels(stage=stage)
        for frm, to in transitions:
            self.stage_transitions.labels(**{"from": frm, "to": to})

    def child(self, metric: _Metric, *values: str) -> _Metric:
        """``metric.labels(*values)`` (label values in the metric's label order), looked up
        once per label set: prometheus_client's ``labels`` validates, converts and locks on
        every call, and the scoring agent counts several labelled series per record.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry())
        >>> m.child(m.signals, "pricing_view") is m.signals.labels(signal="pricing_view")
        True
        """
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def count_marketing(self, counts: Mapping[tuple[str, str, str, str], int]) -> None:
        """Add ``(signal, channel, campaign, content_type)`` counts, bounding the campaign.

        Children are cached by the raw key: a campaign's label never changes once given (a
        name kept stays kept, one turned ``other`` stays ``other``), so the cache is exact.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), campaigns=CampaignLabels(cap=1))
        >>> m.count_marketing({("webinar", "email", "a", "webinar"): 2,
        ...                    ("webinar", "email", "b", "webinar"): 1})
        >>> m.registry.get_sample_value("intent_stream_marketing_signals_total", {
        ...     "signal": "webinar", "channel": "email", "campaign": "other",
        ...     "content_type": "webinar"})
        1.0
        """
        cache = self._marketing
        for key, n in counts.items():
            found = cache.get(key)
            if found is None:
                if len(cache) >= _MARKETING_CACHE:
                    cache.clear()
                signal, channel, campaign, content_type = key
                found = cache[key] = self.marketing_signals.labels(
                    signal=signal,
                    channel=channel,
                    campaign=self.campaigns.label(campaign),
                    content_type=content_type,
                )
            found.inc(n)

    def exposition(self, names: Iterable[str] = ()) -> bytes:
        """The registry in Prometheus text format; only the samples named in ``names``
        (e.g. ``intent_stream_events_processed_total``) if any are given.

        A whole page costs tens of milliseconds once histograms have many series: fine for
        a scrape every 15 s, not for a benchmark or a probe polling one counter.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry())
        >>> m.records_processed.inc(3)
        >>> m.exposition(["intent_stream_records_processed_total"]).decode().splitlines()[-1]
        'intent_stream_records_processed_total 3.0'
        >>> len(m.exposition()) > 10 * len(m.exposition(["intent_stream_records_processed_total"]))
        True
        """
        wanted = set(names)
        return generate_latest(
            self.registry.restricted_registry(wanted) if wanted else self.registry
        )


class FaustMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor (``intent_stream_faust_*``) with its labelled series
    looked up once instead of at every record.

    Faust's own sensor calls prometheus_client's ``labels()`` (validation, conversion, a
    lock) several times per record: received per topic and per partition, the partition's
    end offset, the stream's event count (whose label it also rebuilds with a regex), each
    table read and write, each message sent. The same series are updated here through a
    cache of children. Faust removes the per-partition series when a rebalance starts and
    ends, so the cache is emptied then and the series are made again as records arrive.

    >>> from prometheus_client import CollectorRegistry
    >>> m = Metrics(CollectorRegistry())
    >>> monitor = FaustMonitor(metrics=m.faust)
    >>> monitor.on_send_initiated(None, "intent.alerts.v1", None, 0, 10) is not None
    True
    >>> b'topic="topic.intent.alerts.v1"} 1.0' in m.exposition()
    True
    """

    def __init__(self, metrics: FaustMetrics, **kwargs: Any) -> None:
        super().__init__(metrics=metrics, **kwargs)
        self._series: dict[tuple[Any, ...], Any] = {}
        self._stream_labels: dict[Any, str] = {}

    def _series_of(self, metric: Any, *values: Any) -> Any:
        key = (id(metric), *values)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = metric.labels(*values)
        return found

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        Monitor.on_message_in(self, tp, offset, message)
        m = self._metrics
        m.messages_received.inc()
        m.active_messages.inc()
        self._series_of(m.messages_received_per_topics, tp.topic).inc()
        self._series_of(m.messages_received_per_topics_partition, tp.topic, tp.partition).set(
            offset
        )

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> Any:
        state = Monitor.on_stream_event_in(self, tp, offset, stream, event)
        m = self._metrics
        m.total_events.inc()
        m.total_active_events.inc()
        label = self._stream_labels.get(stream)
        if label is None:
            label = self._stream_labels[stream] = f"stream.{self._stream_label(stream)}.events"
        self._series_of(m.total_events_per_stream, label).inc()
        return state

    def on_table_get(self, table: Any, key: Any) -> None:
        Monitor.on_table_get(self, table, key)
        self._table_op(table, self.KEYS_RETRIEVED)

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        Monitor.on_table_set(self, table, key, value)
        self._table_op(table, self.KEYS_UPDATED)

    def _table_op(self, table: Any, operation: str) -> None:
        key = (id(self._metrics.table_operations), table.name, operation)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = self._metrics.table_operations.labels(
                f"table.{table.name}", operation
            )
        found.inc()

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> Any:
        key = ("sent", topic)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = self._metrics.topic_messages_sent.labels(f"topic.{topic}")
        found.inc()
        return Monitor.on_send_initiated(self, producer, topic, message, keysize, valsize)

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        Monitor.track_tp_end_offset(self, tp, offset)
        self._series_of(self._metrics.topic_partition_end_offset, tp.topic, tp.partition).set(
            offset
        )

    def on_rebalance_start(self, app: Any) -> Any:
        state = super().on_rebalance_start(app)
        self._series.clear()  # Faust removed the per-partition series
        return state

    def on_rebalance_end(self, app: Any, state: Any) -> None:
        super().on_rebalance_end(app, state)
        self._series.clear()
