"""The broker not reachable: at a worker's start (then appearing), for good, and in the demo.

The shared embedded broker is never restarted here (it is memory-only and a restart wedges
connected workers, see KAFKA_NOTES): each test points at a port of its own, on which a private
broker may be started later. A broker lost *mid-run* cannot be tested on this broker for the
same reason; Faust's and aiokafka's own reconnect loops handle it on a real cluster.
"""

from __future__ import annotations

import sys

import pytest

from intent_stream.embedded import free_port, spawn_child, stop_child

from .conftest import WorkerHandle, settings_env, wait_until

pytestmark = pytest.mark.integration


def test_a_worker_waits_for_a_broker_that_is_not_there_yet(settings, tmp_path):
    """Broker unreachable at start: a clear message, retries with back-off; once it appears,
    the worker creates its topics and processes (a private broker: the shared one must never
    be restarted, see KAFKA_NOTES)."""
    from intent_stream.embedded import _tansu_binary

    port = free_port()
    address = f"127.0.0.1:{port}"
    s = settings.replace(kafka=address, kafka_wait=120.0)
    log = tmp_path / "worker.log"
    proc = spawn_child([sys.executable, "-m", "intent_stream", "worker"], env=settings_env(s),
                       log_path=log)  # fmt: skip
    handle = WorkerHandle(s, proc, log)
    broker = None
    try:
        wait_until(
            lambda: handle.log().count("next try in") >= 3,
            timeout=60,
            what="three retries logged",
        )
        text = handle.log()
        assert proc.poll() is None, "no crash loop: the worker is still waiting"
        assert f"Kafka at {address} is not reachable" in text
        assert text.count("is not reachable") == 1  # said once, then a line per retry
        assert "Traceback" not in text
        url = f"tcp://{address}"
        broker = spawn_child(
            [_tansu_binary(tmp_path), "broker", "--listener-url", url,
             "--advertised-listener-url", url],
            log_path=tmp_path / "broker.log",
        )  # fmt: skip
        wait_until(lambda: "answered after" in handle.log(), timeout=60, what="the broker found")

        def serving() -> bool:
            try:
                handle.metrics()
            except OSError:
                return False
            return True

        wait_until(serving, timeout=60, what="the worker's /metrics")
    finally:
        stop_child(proc, timeout=20)
        if broker is not None:
            stop_child(broker)


def test_a_worker_gives_up_on_an_absent_broker_with_a_clear_message(settings, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    s = settings.replace(kafka=address, kafka_wait=3.0)
    log = tmp_path / "worker.log"
    proc = spawn_child([sys.executable, "-m", "intent_stream", "worker"], env=settings_env(s),
                       log_path=log)  # fmt: skip
    try:
        assert proc.wait(timeout=60) == 1
    finally:
        stop_child(proc)
    text = log.read_text()
    assert f"intent-stream: Kafka at {address} did not answer within 3s" in text
    assert "Traceback" not in text


def test_the_demo_says_what_is_wrong_with_an_absent_broker(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    log = tmp_path / "demo.log"
    env = {"PATH": "/usr/bin:/bin", "INTENT_STREAM_KAFKA_WAIT": "2"}
    proc = spawn_child(
        [sys.executable, "-m", "intent_stream", "demo", "--kafka", address, "--duration", "5"],
        env=env,
        log_path=log,
    )
    try:
        assert proc.wait(timeout=90) == 1
    finally:
        stop_child(proc)
    text = log.read_text()
    assert f"waiting for Kafka at {address}" in text
    assert f"Kafka at {address} did not answer" in text
    assert "INTENT_STREAM_KAFKA" in text
    assert "Traceback" not in text
