"""The embedded stack starts real servers on loopback and leaves nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from intent_stream.embedded import EmbeddedStack

from .conftest import wait_until

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def test_broker_and_redis_answer_then_vanish_with_their_temp_dir():
    stack = EmbeddedStack()
    endpoints = stack.start()
    workdir, pids = stack.workdir, stack.pids()
    try:
        admin = KafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
        admin.create_topics([NewTopic("embedded-check", 2, 1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap)
        producer.send("embedded-check", key=b"k", value=b"hello").get(timeout=10)
        producer.close()
        consumer = KafkaConsumer(
            "embedded-check",
            bootstrap_servers=endpoints.kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
        )
        assert [r.value for r in consumer] == [b"hello"]
        consumer.close()
        client = redis.Redis.from_url(endpoints.redis_url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
        assert endpoints.kafka_bootstrap.startswith("127.0.0.1:")
        assert endpoints.redis_url.startswith("redis://127.0.0.1:")
    finally:
        stack.stop()
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=10, what="servers to exit")
    assert not _port_open(endpoints.kafka_bootstrap)
    assert not workdir.exists()
    stack.stop()  # idempotent


def test_servers_die_with_a_killed_parent():
    script = textwrap.dedent(
        """
        import os, signal, sys
        from intent_stream.embedded import EmbeddedStack
        stack = EmbeddedStack()
        stack.start()
        print(*stack.pids(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2, proc.stderr
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "orphaned broker or Redis after kill -9"
