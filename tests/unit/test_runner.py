"""The runner: broker waits that retry then say what is wrong; the event loop setting."""

from __future__ import annotations

import logging

import pytest

from intent_stream.embedded import free_port
from intent_stream.runner import BrokerUnavailable, wait_for_broker
from intent_stream.settings import Settings


def test_an_unreachable_broker_gives_retries_then_a_clear_error(caplog):
    address = f"127.0.0.1:{free_port()}"
    settings = Settings(kafka=address, kafka_wait=6.0)
    with (
        caplog.at_level(logging.INFO, logger="intent_stream"),
        pytest.raises(BrokerUnavailable) as info,
    ):
        wait_for_broker(settings, attempt_timeout=0.5)
    message = str(info.value)
    assert address in message
    assert "INTENT_STREAM_KAFKA" in message
    records = [r for r in caplog.records if r.name == "intent_stream.runner"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    retries = [r for r in records if "next try" in r.getMessage()]
    assert len(warnings) == 1  # said once, clearly; then one info line per retry
    assert address in warnings[0].getMessage()
    assert len(retries) >= 2
    delays = [float(r.args[1]) for r in retries]
    assert delays == sorted(delays)
    assert delays[-1] > delays[0]
    # kafka-python's own per-connection errors were silenced during the wait.
    assert not [r for r in caplog.records if r.name.startswith("kafka") and r.levelno >= 40]


def test_the_event_loop_setting_installs_its_policy():
    import asyncio

    import uvloop

    from intent_stream.runner import use_event_loop

    try:
        assert use_event_loop("uvloop") == "uvloop"
        assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
        assert use_event_loop("auto") == "uvloop"  # installed here: auto takes it
        assert use_event_loop("asyncio") == "asyncio"
        assert not isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
    finally:
        asyncio.set_event_loop_policy(None)
