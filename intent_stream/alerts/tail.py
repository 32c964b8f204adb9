"""``intent-stream alerts tail``: print alerts as they arrive on the sales-alerts topic.

Shares the Kafka plumbing of the forwarder (:func:`consumer_options`, :func:`require_topics`,
:func:`stop_on_signals`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import ExitStack
from typing import IO, Any

import orjson

from intent_stream.alerts.envelope import InvalidAlert, ReceivedAlert, human_line
from intent_stream.settings import Settings
from intent_stream.topics import kafka_client_options

__all__ = ["AlertsError", "consumer_options", "require_topics", "stop_on_signals", "tail"]

logger = logging.getLogger(__name__)


class AlertsError(RuntimeError):
    """An alerts command cannot run as configured; the message says what to do."""


def consumer_options(settings: Settings, *, group: str | None, client_id: str) -> dict[str, Any]:
    """kafka-python consumer options for reading the alerts topic as ``group``."""
    session_ms = int(settings.session_timeout * 1000)
    return {
        **kafka_client_options(settings),
        "client_id": client_id,
        "group_id": group,
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": max(500, session_ms // 5),
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,  # see the setting: hop latency
    }


def require_topics(settings: Settings, names: list[str], *, timeout: float = 15.0) -> None:
    """Fail with advice if a topic is missing.

    A consumer's or producer's metadata request makes many brokers auto-create a missing
    topic with *their* default partition count, which breaks the engine's co-partitioning;
    better to stop and say how to create it properly.
    """
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(
        **kafka_client_options(settings), request_timeout_ms=int(timeout * 1000)
    )
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    missing = [name for name in names if name not in existing]
    if missing:
        raise AlertsError(
            f"topic(s) {', '.join(missing)} do not exist on {settings.kafka}: start a worker "
            "or run 'intent-stream topics create' with the same settings first"
        )


def tail(
    settings: Settings,
    *,
    as_json: bool = False,
    from_beginning: bool = False,
    group: str | None = None,
    out: IO[str] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Print each alert until ``stop`` is set or Ctrl-C; returns the exit code.

    Without ``group`` nothing is committed and every run starts at the end of the topic (or
    at its beginning with ``from_beginning``); with one, a restart resumes where it stopped.
    """
    from kafka import KafkaConsumer

    out = sys.stdout if out is None else out
    stop = threading.Event() if stop is None else stop
    consumer = KafkaConsumer(
        settings.alerts_topic,
        **consumer_options(settings, group=group, client_id=f"{settings.app_id}-alerts-tail"),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group is not None,
    )
    try:
        with ExitStack() as cleanup:
            # Ctrl-C ends the loop between polls: a KeyboardInterrupt raised inside one can
            # leave a kafka-python connection half-read when close() shuts its socket.
            stop_on_signals(stop, cleanup)
            # On stderr, so that stdout stays the alerts (one JSON object a line with --json).
            start = "its beginning" if from_beginning else "new alerts"
            print(f"waiting for alerts on {settings.alerts_topic} ({start}); Ctrl-C stops",
                  file=sys.stderr, flush=True)  # fmt: skip
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        _print(record, as_json=as_json, out=out)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # The reader went away ('alerts tail | head'): stop quietly, as Unix tools do, and
        # point stdout at /dev/null so the interpreter's final flush does not fail again.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    finally:
        consumer.close()
    return 0


def _print(record: Any, *, as_json: bool, out: IO[str]) -> None:
    try:
        received = ReceivedAlert.from_record(record.value, record.headers)
    except InvalidAlert as exc:
        logger.warning(
            "skipping record %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
        )
        return
    line = orjson.dumps(received.cloud_event()).decode() if as_json else human_line(received)
    print(line, file=out, flush=True)


def stop_on_signals(stop: threading.Event, cleanup: ExitStack) -> None:
    """SIGINT and SIGTERM end the loop at the next safe point instead of mid-delivery."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.signal(sig, handler)
        cleanup.callback(signal.signal, sig, previous)
