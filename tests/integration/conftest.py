"""Integration fixtures: one embedded broker and Redis per session, a real worker per test.

Each test gets its own topic names, consumer group (app id) and Redis key prefix, so tests
never see each other's data; every wait is bounded by a deadline.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from intent_stream.embedded import (
    EmbeddedEndpoints,
    EmbeddedStack,
    free_port,
    spawn_child,
    stop_child,
)
from intent_stream.settings import Settings, env_name, setting_fields
from intent_stream.topics import ensure_topics


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, what: str, every: float = 0.1
) -> Any:
    """Poll ``predicate`` until it returns a truthy value, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    embedded = EmbeddedStack(workdir=tmp_path_factory.mktemp("embedded"))
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture(scope="session")
def endpoints(stack: EmbeddedStack) -> EmbeddedEndpoints:
    assert stack.endpoints is not None
    return stack.endpoints


@pytest.fixture
def settings(endpoints: EmbeddedEndpoints, tmp_path: Path) -> Settings:
    """Settings private to one test: own topics, group, key prefix and web port."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka=endpoints.kafka_bootstrap,
        redis=endpoints.redis_url,
        app_id=f"it-{tag}",
        raw_topic=f"it.{tag}.events.raw.v1",
        identity_topic=f"it.{tag}.identity.v1",
        events_topic=f"it.{tag}.events.v1",
        alerts_topic=f"it.{tag}.sales-alerts.v1",
        dlq_topic=f"it.{tag}.events.dlq.v1",
        transitions_topic=f"it.{tag}.stage-transitions.v1",
        redis_prefix=f"it:{tag}:",
        partitions=4,
        session_timeout=6.0,
        web_port=free_port(),
        data_dir=str(tmp_path / "worker-data"),
        redis_flush_interval=0.1,
    )


@dataclass
class WorkerHandle:
    settings: Settings
    proc: Any
    log_path: Path

    @property
    def metrics_url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}/metrics"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
            return response.read().decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_STREAM_")}
    env.update({env_name(f.name): str(getattr(settings, f.name)) for f in setting_fields()})
    return env


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Settings], WorkerHandle]]:
    """Start ``intent-stream worker`` as a real process; wait until it serves /metrics."""
    started: list[WorkerHandle] = []

    def start(settings: Settings) -> WorkerHandle:
        ensure_topics(settings)
        log_path = tmp_path / f"worker-{len(started)}.log"
        proc = spawn_child(
            [sys.executable, "-m", "intent_stream", "worker"],
            env=settings_env(settings),
            log_path=log_path,
        )
        handle = WorkerHandle(settings, proc, log_path)
        started.append(handle)

        def ready() -> bool:
            assert proc.poll() is None, f"worker exited early:\n{handle.log()[-3000:]}"
            try:
                handle.metrics()
            except OSError:
                return False
            return True

        wait_until(ready, timeout=60, what="the worker's /metrics")
        return handle

    yield start
    for handle in started:
        stop_child(handle.proc, timeout=20)


@pytest.fixture
def producer(endpoints: EmbeddedEndpoints) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap, linger_ms=5)
    yield p
    p.close(timeout=5)


def read_to_end(endpoints: EmbeddedEndpoints, topic: str, *, timeout: float) -> list[Any]:
    """Every record of every partition of ``topic``, up to the end offsets it had when the
    read began (the broker's end offset can fall short of the last record of its last batch,
    but a fetch returns whole batches: reaching it reads the batch), in partition order."""
    from kafka import TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=endpoints.kafka_bootstrap, group_id=None, enable_auto_commit=False
    )
    deadline = time.monotonic() + timeout
    try:
        partitions = None
        while not partitions:
            partitions = consumer.partitions_for_topic(topic)
            assert partitions or time.monotonic() < deadline, f"{topic} has no partitions"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic} was not read to its end in {timeout}s"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def read_topic(
    endpoints: EmbeddedEndpoints,
    topic: str,
    *,
    count: int,
    timeout: float,
    predicate: Callable[[Any], bool] = lambda record: True,
) -> list[Any]:
    """Read ``topic`` from the beginning until ``count`` matching records arrived."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=endpoints.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=200,
    )
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            found.extend(record for record in consumer if predicate(record))
    finally:
        consumer.close()
    assert len(found) >= count, f"only {len(found)} of {count} records arrived on {topic}"
    return found
