"""End offsets confirmed by reading (what table recovery and the identity reader rely on).

A worker that trusts ListOffsets(latest) stops reading a changelog early wherever the broker
answers less than the log end: its tables then miss their last updates after a restart.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from intent_stream.app import confirm_end_offsets
from intent_stream.topics import aiokafka_client_options, ensure_topics

pytestmark = pytest.mark.integration


async def _produce_batches(settings, topic: str, sizes: dict[int, list[int]]) -> None:
    """Per partition, batches of the given sizes (each batch sent as one produce request)."""
    producer = AIOKafkaProducer(**aiokafka_client_options(settings), linger_ms=100)
    await producer.start()
    try:
        for partition, batches in sizes.items():
            for n in batches:
                futures = [
                    await producer.send(topic, value=b"x", partition=partition) for _ in range(n)
                ]
                await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _listed(settings, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**aiokafka_client_options(settings), group_id=None)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


def test_confirmed_end_offsets_are_the_log_ends_after_multi_record_batches(settings):
    ensure_topics(settings)
    topic = settings.events_topic
    # partition 0: batches of 10, 10, 7 (end 27); 1: one record (end 1); 2: one batch of 50;
    # 3: empty.
    sizes = {0: [10, 10, 7], 1: [1], 2: [50]}
    expected = {TopicPartition(topic, 0): 27, TopicPartition(topic, 1): 1,
                TopicPartition(topic, 2): 50, TopicPartition(topic, 3): 0}  # fmt: skip

    async def run() -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        await _produce_batches(settings, topic, sizes)
        listed = await _listed(settings, sorted(expected))
        return listed, await confirm_end_offsets(settings, listed, timeout=20)

    listed, confirmed = asyncio.run(run())
    assert confirmed == expected
    # Never below what the broker listed (on a broker that lists the true end: equal).
    assert all(confirmed[tp] >= listed[tp] for tp in expected)
    print(f"\nlisted {sorted(listed.values())}, confirmed {sorted(confirmed.values())}")
