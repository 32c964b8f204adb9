"""The worker's consumer delivers each stream partition in offset order from the committed
offset, refilling what a fetch skipped (intent_stream.app, the Consumer of ``_transport``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

from intent_stream.app import create_app, read_range
from intent_stream.topics import ensure_topics

pytestmark = pytest.mark.integration


def _records_on(settings, producer, partition: int, n: int) -> TP:
    """``n`` records on ``partition`` of the raw topic; its TP."""
    ensure_topics(settings)
    for i in range(n):
        producer.send(settings.raw_topic, value=b'{"n": %d}' % i, partition=partition)
    producer.flush(timeout=10)
    return TP(settings.raw_topic, partition)


def _recording_consumer(settings) -> tuple[Any, Any, list[int]]:
    """A never-started app's consumer whose deliveries are recorded (offsets) instead."""
    engine = create_app(settings)
    consumer = engine.app.consumer
    delivered: list[int] = []

    async def deliver(message) -> None:
        delivered.append(message.offset)

    consumer._deliver = deliver
    return engine.app, consumer, delivered


def test_a_record_past_the_expected_offset_gets_the_skipped_ones_first_in_order(settings, producer):
    tp = _records_on(settings, producer, partition=2, n=12)

    async def run() -> list[int]:
        app, consumer, delivered = _recording_consumer(settings)
        app.flow_control.resume()  # as in a running worker between rebalances
        records = {r.offset: r for r in await read_range(settings, tp, 0, 12)}
        assert sorted(records) == list(range(12))
        consumer._expected[tp] = 3  # as after a seek to committed offset 3
        # The fetch hands over offset 10 first: 3-9 come before it, in order.
        await consumer._in_order(consumer._to_message(tp, records[10]))
        # A re-read behind the expected offset passes through, with no refill.
        await consumer._in_order(consumer._to_message(tp, records[5]))
        await consumer._in_order(consumer._to_message(tp, records[11]))
        return delivered

    assert asyncio.run(run()) == [3, 4, 5, 6, 7, 8, 9, 10, 5, 11]


def test_a_record_that_arrives_while_the_flow_is_stopped_is_not_delivered(settings, producer):
    # During a rebalance Faust stops the flow and the stream drops what arrives; the
    # expected offset stays, so the record comes again after the seek back (or a refill).
    tp = _records_on(settings, producer, partition=1, n=3)

    async def run() -> tuple[list[int], int]:
        app, consumer, delivered = _recording_consumer(settings)
        records = {r.offset: r for r in await read_range(settings, tp, 0, 3)}
        consumer._expected[tp] = 0
        app.flow_control.suspend()
        await consumer._in_order(consumer._to_message(tp, records[0]))
        app.flow_control.resume()
        expected = consumer._expected[tp]
        await consumer._in_order(consumer._to_message(tp, records[0]))
        return delivered, expected

    assert asyncio.run(run()) == ([0], 0)
