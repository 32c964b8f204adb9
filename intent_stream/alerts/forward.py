"""``intent-stream alerts forward``: deliver every alert to a webhook, once.

The loop, per alert record, in partition order:

1. parse it (not an alert: dead-letter it, reason ``invalid_alert``);
2. skip it if Redis says its id was already delivered to this scope (a replay, a restart);
3. POST it; retry timeouts, connection errors, 408, 429 and 5xx with capped exponential
   back-off and jitter, for ever or until ``webhook_give_up`` seconds (then dead-letter it,
   reason ``gave_up``); any other answer dead-letters it at once (reason ``refused``);
4. on a 2xx, mark the id delivered in Redis (``SET NX`` with ``delivered_ttl``);
5. commit the record's offset, only now.

So a crash before 5 re-reads the record, and step 2 drops it if it was delivered; the one
window left is a crash between the webhook's 2xx and step 4, which re-posts that single alert
after the restart (with the same ``Idempotency-Key`` header, so the receiver can drop it).
A stop requested during back-off leaves the record uncommitted for the next run.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import RedisError

from intent_stream.alerts.envelope import InvalidAlert, ReceivedAlert
from intent_stream.alerts.webhook import (
    Attempt,
    Format,
    backoff_delay,
    classify,
    failure_kind,
    post,
    webhook_body,
)
from intent_stream.metrics import Metrics
from intent_stream.settings import Settings
from intent_stream.topics import kafka_client_options

__all__ = ["ForwardOptions", "Forwarder", "daily_key", "delivered_key", "forward"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sender = Callable[..., Attempt]

_DAY_TTL = 2 * 86400  # a day's per-account count is only needed during that day


def delivered_key(prefix: str, scope: str, alert_id: str) -> str:
    """The Redis key marking ``alert_id`` as delivered to ``scope``.

    >>> delivered_key("intent:", "slack-sales", "5d1c")
    'intent:alerts:delivered:slack-sales:5d1c'
    """
    return f"{prefix}alerts:delivered:{scope}:{alert_id}"


def daily_key(prefix: str, scope: str, account_id: str, day: str) -> str:
    """The Redis counter of alerts delivered for an account on a UTC day.

    >>> daily_key("intent:", "webhook", "acme.com", "2026-11-20")
    'intent:alerts:per-day:webhook:2026-11-20:acme.com'
    """
    return f"{prefix}alerts:per-day:{scope}:{day}:{account_id}"


@dataclass(frozen=True, kw_only=True)
class ForwardOptions:
    """What ``alerts forward`` was asked to do beyond the settings."""

    fmt: Format = "slack"
    #: Names the destination: the de-duplication keys and the default consumer group are per
    #: scope, so two forwarders to two webhooks (Slack and a CRM) each deliver every alert.
    scope: str = "webhook"
    group: str | None = None
    #: Where a consumer group without committed offsets starts: the oldest alert, or only
    #: alerts published from now on (the default, so a new forwarder does not post history).
    from_beginning: bool = False

    def group_id(self, settings: Settings) -> str:
        return self.group or f"{settings.app_id}-alerts-forward-{self.scope}"


class Forwarder:
    """Consumes alerts and delivers them; :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        *,
        settings: Settings,
        options: ForwardOptions,
        consumer: Any,
        producer: Any,
        redis: Any,
        metrics: Metrics,
        stop: threading.Event,
        sender: Sender = post,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.options = options
        self.consumer = consumer
        self.producer = producer
        self.redis = redis
        self.metrics = metrics
        self.stop = stop
        self.sender = sender
        self.rand = rand

    def run(self) -> None:
        from kafka.errors import CommitFailedError, KafkaError

        while not self.stop.is_set():
            for tp, records in self.consumer.poll(timeout_ms=500, max_records=50).items():
                for record in records:
                    if self.stop.is_set() or not self.handle(record):
                        return  # stopping mid-retry: this record stays uncommitted
                    try:
                        self._commit(tp, record.offset + 1)
                    except (CommitFailedError, KafkaError) as exc:
                        # Usually a rebalance while we were retrying: rewind so the rest of
                        # this batch is read again (delivered ones are then skipped).
                        logger.warning("commit failed on %s (%s); re-reading", tp, exc)
                        self._rewind(tp, record.offset)
                        break

    def handle(self, record: Any) -> bool:
        """Deliver, skip or dead-letter one record; False if stopped before finishing."""
        try:
            received = ReceivedAlert.from_record(record.value, record.headers)
        except InvalidAlert as exc:
            self._dead_letter(record, reason="invalid_alert", status=None, detail=str(exc))
            return True
        key = delivered_key(self.settings.redis_prefix, self.options.scope, received.alert_id)
        seen = self._with_redis(lambda: bool(self.redis.exists(key)))
        if seen is None:
            return False
        if seen:
            self.metrics.webhook_deliveries.labels(outcome="duplicate").inc()
            logger.info("alert %s already delivered; skipped", received.alert_id)
            return True
        return self._deliver(record, received, key)

    def _deliver(self, record: Any, received: ReceivedAlert, key: str) -> bool:
        settings = self.settings
        try:
            body, content_type = webhook_body(received, self.options.fmt)
        except Exception as exc:  # a value shaped unlike an alert: it must not wedge the rest
            detail = f"cannot be formatted as {self.options.fmt}: {type(exc).__name__}: {exc}"
            self._dead_letter(record, reason="invalid_alert", status=None, detail=detail)
            logger.warning("alert %s %s; dead-lettered", received.alert_id, detail)
            return True
        started = time.monotonic()
        retries = 0
        while True:
            t0 = time.monotonic()
            attempt = self.sender(
                settings.webhook,
                body,
                content_type=content_type,
                idempotency_key=received.alert_id,
                timeout=settings.webhook_timeout,
            )
            self.metrics.webhook_request_seconds.observe(time.monotonic() - t0)
            verdict = classify(attempt)
            if verdict == "delivered":
                return self._mark_delivered(received, key, retries)
            kind = failure_kind(attempt)
            self.metrics.webhook_failures.labels(kind=kind).inc()
            if verdict == "dead_letter":
                self._dead_letter(
                    record, reason="refused", status=attempt.status, detail=attempt.detail
                )
                logger.warning(
                    "alert %s refused by the webhook (HTTP %s); dead-lettered",
                    received.alert_id,
                    attempt.status,
                )
                return True
            waited = time.monotonic() - started
            if settings.webhook_give_up and waited >= settings.webhook_give_up:
                detail = f"{kind} after {retries + 1} attempts in {waited:.0f}s: {attempt.detail}"
                self._dead_letter(record, reason="gave_up", status=attempt.status, detail=detail)
                logger.error(
                    "gave up on alert %s after %.0fs; dead-lettered", received.alert_id, waited
                )
                return True
            delay = backoff_delay(
                retries,
                cap=settings.webhook_max_backoff,
                retry_after=attempt.retry_after,
                rand=self.rand,
            )
            logger.warning(
                "webhook attempt %d for alert %s failed (%s); retrying in %.1fs",
                retries + 1,
                received.alert_id,
                kind,
                delay,
            )
            if self.stop.wait(delay):
                return False
            retries += 1

    def _mark_delivered(self, received: ReceivedAlert, key: str, retries: int) -> bool:
        ttl = max(1, int(self.settings.delivered_ttl))
        # Marked only after the 2xx: a crash before this line re-posts this one alert.
        fresh = self._with_redis(lambda: bool(self.redis.set(key, b"1", nx=True, ex=ttl)))
        self.metrics.webhook_deliveries.labels(outcome="delivered").inc()
        logger.info("alert %s delivered (%d retries)", received.alert_id, retries)
        if fresh:
            self._count_daily(received)
        # Stopping while Redis was down leaves the mark unwritten; the alert was delivered,
        # so the record is still done (a replay may re-post it, as documented).
        return True

    def _count_daily(self, received: ReceivedAlert) -> None:
        day = received.attributes.get("time", "")[:10] or "unknown"
        key = daily_key(self.settings.redis_prefix, self.options.scope, received.account_id, day)

        def incr() -> int:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, _DAY_TTL)
            return int(pipe.execute()[0])

        count = self._with_redis(incr)
        if count is not None:
            self.metrics.alerts_per_account_day.observe(count)

    def _dead_letter(self, record: Any, *, reason: str, status: int | None, detail: str) -> None:
        headers = [
            (k, v) for k, v in (record.headers or []) if not k.startswith("dlq.") and v is not None
        ]
        headers += [
            ("dlq.reason", reason.encode()),
            ("dlq.status", str(status or "").encode()),
            ("dlq.detail", detail.encode()[:1000]),
            ("dlq.topic", record.topic.encode()),
            ("dlq.partition", str(record.partition).encode()),
            ("dlq.offset", str(record.offset).encode()),
        ]
        future = self.producer.send(
            self.settings.alerts_dlq_topic, key=record.key, value=record.value, headers=headers
        )
        # Wait for the broker's ack: the offset is committed right after, so the dead letter
        # must be durable first.
        future.get(timeout=30)
        self.metrics.webhook_deliveries.labels(outcome="dead_lettered").inc()

    def _with_redis(self, call: Callable[[], T]) -> T | None:
        """``call()``, retried with back-off while Redis fails; None if stopped meanwhile.

        De-duplication needs Redis: posting without it could post a duplicate, so the
        forwarder waits for Redis rather than guess.
        """
        retries = 0
        while True:
            try:
                return call()
            except RedisError as exc:
                self.metrics.forwarder_redis_errors.inc()
                delay = backoff_delay(retries, cap=self.settings.webhook_max_backoff)
                logger.warning("Redis unavailable (%s); retrying in %.1fs", exc, delay)
                if self.stop.wait(delay):
                    return None
                retries += 1

    def _commit(self, tp: Any, offset: int) -> None:
        from kafka.structs import OffsetAndMetadata

        self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})

    def _rewind(self, tp: Any, offset: int) -> None:
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, offset)


def forward(
    settings: Settings,
    options: ForwardOptions,
    *,
    metrics_port: int | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run the forwarder until SIGINT/SIGTERM (or ``stop``); returns the exit code."""
    import redis
    from kafka import KafkaConsumer, KafkaProducer
    from prometheus_client import CollectorRegistry, start_http_server

    from intent_stream.app import redis_options

    stop = threading.Event() if stop is None else stop
    metrics = Metrics(CollectorRegistry())
    group = options.group_id(settings)
    with ExitStack() as cleanup:
        if metrics_port:
            server, _ = start_http_server(
                metrics_port, addr=settings.web_host, registry=metrics.registry
            )
            cleanup.callback(server.shutdown)
            logger.info("metrics on http://%s:%d/metrics", settings.web_host, metrics_port)
        client = redis.Redis.from_url(
            settings.redis,
            socket_timeout=5.0,
            socket_connect_timeout=5.0,
            **redis_options(settings),
        )
        cleanup.callback(client.close)
        producer = KafkaProducer(
            **kafka_client_options(settings), acks="all", linger_ms=0, retries=5
        )
        cleanup.callback(producer.close, timeout=10)
        from intent_stream.alerts.tail import consumer_options, stop_on_signals

        consumer = KafkaConsumer(
            settings.alerts_topic,
            **consumer_options(settings, group=group, client_id=f"{settings.app_id}-alerts-fwd"),
            enable_auto_commit=False,
            auto_offset_reset="earliest" if options.from_beginning else "latest",
            # Retrying one alert may take long; leaving the group then is harmless (the
            # offset is not committed, and delivered alerts are skipped after the rejoin).
            max_poll_records=50,
        )
        cleanup.callback(consumer.close, autocommit=False)
        forwarder = Forwarder(
            settings=settings,
            options=options,
            consumer=consumer,
            producer=producer,
            redis=client,
            metrics=metrics,
            stop=stop,
        )
        stop_on_signals(stop, cleanup)
        logger.info(
            "forwarding %s to the webhook as %s (group %s, scope %s)",
            settings.alerts_topic,
            options.fmt,
            group,
            options.scope,
        )
        forwarder.run()
        logger.info("forwarder stopped")
    return 0
