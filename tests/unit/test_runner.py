"""The runner: broker waits that retry then say what is wrong; the event loop setting; the
allocator's memory handed back."""

from __future__ import annotations

import logging
import platform

import pytest

from intent_stream.embedded import free_port
from intent_stream.runner import BrokerUnavailable, memory_trimmer, wait_for_broker
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


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_memory_trimmer_hands_freed_heap_pages_back():
    release = memory_trimmer()
    assert release is not None
    # Many 1 KB objects (malloc's heap, not pymalloc's arenas) with a survivor every 64:
    # freeing the rest leaves free pages inside the heap that only malloc_trim returns.
    blocks = [bytes(1024) + bytes([i % 256]) for i in range(200_000)]
    survivors = blocks[::64]
    del blocks
    before = _rss_bytes()
    assert release() in (0, 1)
    assert _rss_bytes() < before - 50 * 2**20  # ~190 MB were freed, most of it whole pages
    del survivors  # kept alive until here: they pin a page every 64 KB
