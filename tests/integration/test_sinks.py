"""Sending from agents (intent_stream.agents.sinks) on a real broker: ``produce_now`` and
the alerts' ``PromptProducer`` do not wait out the producer's linger, and keep their
records' order per partition."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from intent_stream.agents.sinks import PromptProducer, produce, produce_now
from intent_stream.app import create_app
from intent_stream.topics import ensure_topics, partition_for

from .conftest import read_to_end

pytestmark = pytest.mark.integration

#: The producer's linger in these tests: a record that waits it out is delivered after
#: the tests' waits for a record sent now (4 s) have ended.
LINGER_MS = 5_000


async def _with_producer(settings: Any, work: Any) -> Any:
    """Run ``work(engine)`` with the engine's producer started, then stop it."""
    engine = create_app(settings)
    await engine.app.producer.start()
    try:
        return await work(engine)
    finally:
        await engine.app.producer.stop()


def test_a_record_sent_now_is_delivered_while_an_ordinary_send_lingers(settings):
    settings = settings.replace(producer_linger_ms=LINGER_MS)
    ensure_topics(settings)

    async def work(engine: Any) -> tuple[Any, bool]:
        lingering = await produce(engine, settings.transitions_topic, key=b"a", value=b"1")
        sent = await produce_now(
            engine, settings.events_topic, key=b"acme.com", value=b"2", partition=3
        )
        metadata = await asyncio.wait_for(sent, timeout=4)
        return metadata, lingering.done()

    metadata, lingering_done = asyncio.run(_with_producer(settings, work))
    assert (metadata.topic, metadata.partition) == (settings.events_topic, 3)
    assert not lingering_done


def test_records_sent_now_keep_their_order_per_partition(settings, endpoints):
    # Interleaved with ordinary sends to the same partitions: each record queues behind
    # what was queued before it, whichever way it was sent.
    settings = settings.replace(producer_linger_ms=50)
    ensure_topics(settings)
    sends = [(n % settings.partitions, n % 3 == 0) for n in range(40)]  # (partition, now?)

    async def work(engine: Any) -> None:
        futures = []
        for n, (partition, now) in enumerate(sends):
            send = produce_now if now else produce
            topic, value = settings.events_topic, b"%d" % n
            futures.append(await send(engine, topic, key=None, value=value, partition=partition))
        await asyncio.wait_for(asyncio.gather(*futures), timeout=15)

    asyncio.run(_with_producer(settings, work))
    records = read_to_end(endpoints, settings.events_topic, timeout=15)
    assert len(records) == len(sends)
    for partition in range(settings.partitions):
        values = [int(r.value) for r in records if r.partition == partition]
        assert values == [n for n, (p, _) in enumerate(sends) if p == partition]


def test_a_record_larger_than_a_producer_batch_is_still_sent(settings, endpoints):
    settings = settings.replace(producer_max_batch_bytes=1024)
    ensure_topics(settings)
    value = b"x" * 4096

    async def work(engine: Any) -> Any:
        sent = await produce_now(engine, settings.events_topic, key=b"k", value=value, partition=2)
        return await asyncio.wait_for(sent, timeout=15)

    metadata = asyncio.run(_with_producer(settings, work))
    assert metadata.partition == 2
    records = read_to_end(endpoints, settings.events_topic, timeout=15)
    assert [(r.partition, r.value) for r in records] == [(2, value)]


def test_the_prompt_producer_sends_by_key_without_linger_and_refuses_after_stop(
    settings, endpoints
):
    # Faust's producer would hold these 5 s; the alerts' own producer has no linger.
    settings = settings.replace(producer_linger_ms=LINGER_MS)
    ensure_topics(settings)
    keys = [f"account-{n % 3}.example".encode() for n in range(12)]

    async def run() -> list[Any]:
        out = PromptProducer(settings, client_id=f"{settings.app_id}-alerts")
        try:
            futures = [
                await out.send(settings.alerts_topic, key=key, value=b"%d" % n, headers=[])
                for n, key in enumerate(keys)
            ]
            delivered = await asyncio.wait_for(asyncio.gather(*futures), timeout=4)
            await out.flush()
        finally:
            await out.stop()
        with pytest.raises(RuntimeError, match="stopped"):
            await out.send(settings.alerts_topic, key=b"late", value=b"x", headers=[])
        return delivered

    delivered = asyncio.run(run())
    assert [m.partition for m in delivered] == [partition_for(k, settings.partitions) for k in keys]
    records = read_to_end(endpoints, settings.alerts_topic, timeout=15)
    for key in set(keys):
        values = [int(r.value) for r in records if r.key == key]
        assert values == [n for n, k in enumerate(keys) if k == key]


def test_a_prompt_producer_never_sent_to_stops_without_a_broker(settings):
    settings = settings.replace(kafka="127.0.0.1:1")  # nothing listens there

    async def run() -> None:
        out = PromptProducer(settings, client_id="idle")
        await out.flush()
        await out.stop()

    asyncio.run(run())
