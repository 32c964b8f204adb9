"""Running a worker: resolve the embedded stack, wait for the broker, create topics, go."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from typing import Any

import faust

from intent_stream.settings import Settings
from intent_stream.topics import ensure_topics

__all__ = ["BrokerUnavailable", "resolve_embedded", "run_worker", "wait_for_broker"]

logger = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The Kafka brokers did not answer within the allowed time."""


def resolve_embedded(settings: Settings, stack: ExitStack) -> Settings:
    """Start the embedded broker and/or Redis if asked for; return settings pointing at them."""
    if not (settings.kafka_embedded or settings.redis_embedded):
        return settings
    from intent_stream.embedded import EmbeddedStack

    embedded = EmbeddedStack(kafka=settings.kafka_embedded, redis=settings.redis_embedded)
    endpoints = stack.enter_context(embedded)
    return settings.replace(
        kafka=endpoints.kafka_bootstrap if settings.kafka_embedded else None,
        redis=endpoints.redis_url if settings.redis_embedded else None,
        data_dir=settings.data_dir or str(embedded.workdir / "worker-data"),
    )


def wait_for_broker(settings: Settings, *, timeout: float = 60.0) -> None:
    """Block until the brokers answer a metadata request, retrying with back-off."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=settings.kafka.split(","),
                client_id=f"{settings.app_id}-probe",
                request_timeout_ms=5000,
            )
        except (KafkaError, OSError, ValueError) as exc:
            if time.monotonic() + delay > deadline:
                raise BrokerUnavailable(
                    f"Kafka at {settings.kafka} did not answer within {timeout:.0f}s "
                    f"({type(exc).__name__}: {exc}). Check INTENT_STREAM_KAFKA, that the "
                    "broker is running and reachable, or use 'embedded' for a local one."
                ) from exc
            logger.warning("Kafka at %s not reachable yet (%s); retrying", settings.kafka, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            admin.close()
            return


class _Worker(faust.Worker):
    """A Faust worker without the terminal spinner.

    At log level WARNING or above, Faust installs a spinner that sets the root logger to
    DEBUG, so every debug call in aiokafka builds a record; we never want that.
    """

    def on_setup_root_logger(self, logger: Any, level: int) -> None:
        self.spinner = None


def run_worker(settings: Settings) -> int:
    """Run a worker until it is stopped (SIGINT/SIGTERM); returns the exit code."""
    from intent_stream.app import create_app

    with ExitStack() as stack:
        settings = resolve_embedded(settings, stack)
        wait_for_broker(settings)
        ensure_topics(settings)
        engine = create_app(settings)
        logger.info(
            "worker %s: kafka=%s web=http://%s:%d/metrics",
            settings.app_id,
            settings.kafka,
            settings.web_host,
            settings.web_port,
        )
        worker = _Worker(engine.app, loglevel=settings.log_level, quiet=True)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0
