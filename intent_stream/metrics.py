"""Every Prometheus metric the engine exports, in one registry-injected bundle.

Names follow ``intent_stream_<thing>_<unit>``; counters end in ``_total``; durations are
``_seconds`` histograms. Labels never carry account ids, emails or other unbounded values.

>>> from prometheus_client import CollectorRegistry
>>> m = Metrics(CollectorRegistry())
>>> m.events_processed.labels(type="track").inc()
>>> b"intent_stream_events_processed_total" in m.exposition()
True
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Collector answers wait for the broker's acknowledgement: a few milliseconds when healthy.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The engine's metrics, registered on ``registry`` (a fresh one per worker or test)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        p = "intent_stream_"
        self.records_processed = Counter(
            p + "records_processed_total",
            "Kafka records taken from the event topic (a record may carry many events).",
            registry=registry,
        )
        self.events_processed = Counter(
            p + "events_processed_total",
            "Events applied to account state, by Segment call type.",
            ["type"],
            registry=registry,
        )
        self.events_skipped = Counter(
            p + "events_skipped_total",
            "Events skipped because their record was already applied (replay after a restart).",
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
            "Hot-lead alerts published to the sales-alerts topic, by rule.",
            ["rule"],
            registry=registry,
        )
        self.labels_learned = Counter(
            p + "labels_learned_total",
            "Outcome labels the intent model learned from, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.record_latency = Histogram(
            p + "record_latency_seconds",
            "Seconds from a record's Kafka timestamp to the end of its processing.",
            buckets=_LATENCY_BUCKETS,
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
            "Changed accounts waiting to be written to Redis.",
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

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
