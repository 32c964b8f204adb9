"""Sending to Kafka from agents: failures counted, never raised; dead letters with their origin."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from intent_stream.metrics import Metrics

if TYPE_CHECKING:
    from intent_stream.app import Engine
    from intent_stream.pipeline import DeadLetter

__all__ = ["observe_send", "produce", "produce_now", "send_dead_letters"]

logger = logging.getLogger(__name__)


async def observe_send(
    send: Awaitable[Any],
    *,
    metrics: Metrics,
    topic: str,
    on_delivered: Callable[[], None] | None = None,
) -> None:
    """Await ``send`` and count its failure in ``intent_stream_produce_errors_total{topic}``.

    Faust's ``send`` returns the producer's delivery future (or, with publish-on-commit, the
    attached message's future): a broker error surfaces there later, not as an exception
    here, so a done-callback counts it and calls ``on_delivered`` on success. An exception
    raised while sending is counted and logged but not re-raised: a crashing Faust agent
    can commit offsets past records it never processed (see KAFKA_NOTES), which loses more
    than the one message that failed.
    """
    try:
        pending = await send
    except Exception as exc:
        metrics.produce_errors.labels(topic=topic).inc()
        logger.error("send to the %s topic failed: %s", topic, type(exc).__name__)
        return
    if not asyncio.isfuture(pending):
        if on_delivered is not None:
            on_delivered()
        return

    def done(fut: asyncio.Future[Any]) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if fut.cancelled() or exc is not None:
            metrics.produce_errors.labels(topic=topic).inc()
            logger.error(
                "delivery to the %s topic failed: %s",
                topic,
                type(exc).__name__ if exc is not None else "cancelled",
            )
        elif on_delivered is not None:
            on_delivered()

    pending.add_done_callback(done)


async def produce(
    engine: Engine,
    topic: str,
    *,
    key: bytes | None,
    value: bytes | None,
    partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> Any:
    """Queue a record on Faust's producer directly; return its delivery future.

    For the agents' many sends (identity edges, alerts, transitions) and the collector:
    Faust's ``Topic.send`` wraps each record in a message, a future and a channel callback,
    which cost about as much as producing it. Same producer, same ordering per partition.
    """
    return await engine.app.producer.send(topic, key, value, partition, None, headers or None)


async def produce_now(
    engine: Engine, topic: str, *, key: bytes | None, value: bytes, partition: int
) -> Any:
    """Queue a record that leaves without waiting out the producer's linger; return its
    delivery future.

    For the ingest agent's forwards: each is a batch of events already, and the scoring
    agent waits for it. ``producer_linger_ms`` holds every new producer batch back that
    long so that the changelog's many small writes share requests; a record sent here goes
    in a closed batch of its own, which aiokafka's sender takes at once (a closed batch does
    not linger), behind the batches already queued for its partition, so the order per
    partition holds. Faust flushes this producer before each commit, as for any send.
    """
    producer = engine.app.producer._ensure_producer()
    batch = producer.create_batch()
    if batch.append(key=key, value=value, timestamp=None, headers=[]) is None:
        # Larger than a producer batch: the ordinary path sends it (or reports why not).
        return await produce(engine, topic, key=key, value=value, partition=partition)
    batch.close()
    return await producer.send_batch(batch, topic, partition=partition)


async def send_dead_letters(engine: Engine, dead: Sequence[DeadLetter], message: Any) -> None:
    """Publish ``dead`` (from the record ``message``) with ``dlq.*`` headers; count them."""
    if not dead:
        return
    for letter in dead:
        await observe_send(
            engine.topics.dlq.send(
                key=message.key,
                value=letter.value,
                headers=[
                    ("dlq.reason", letter.reason.encode()),
                    ("dlq.detail", letter.detail.encode()),
                    ("dlq.topic", message.topic.encode()),
                    ("dlq.partition", str(message.partition).encode()),
                    ("dlq.offset", str(message.offset).encode()),
                ],
            ),
            metrics=engine.metrics,
            topic="dlq",
        )
        engine.metrics.dead_letters.labels(reason=letter.reason).inc()
    logger.warning(
        "dead-lettered %d item(s) from %s[%d]@%d: %s",
        len(dead),
        message.topic,
        message.partition,
        message.offset,
        ", ".join(sorted({d.reason for d in dead})),
    )
