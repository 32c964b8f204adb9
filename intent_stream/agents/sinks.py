"""Sending to Kafka from agents: failures counted, never raised; dead letters with their origin."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from intent_stream.metrics import Metrics
from intent_stream.settings import Settings
from intent_stream.topics import aiokafka_client_options

if TYPE_CHECKING:
    from intent_stream.app import Engine
    from intent_stream.pipeline import DeadLetter

__all__ = ["PromptProducer", "observe_send", "produce", "produce_now", "send_dead_letters"]

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


class PromptProducer:
    """A producer of its own, without linger, for the alerts a sales team waits for.

    On Faust's producer an alert would wait out ``producer_linger_ms`` in a new batch and
    then queue behind the table changelog's requests to the broker (aiokafka sends one
    request at a time per broker). Here it goes out as soon as the event loop lets the
    sender run, and alerts that arrive meanwhile share the next request. It starts at its
    first send (a worker that never alerts opens no connection), is flushed before every
    offset commit (the worker registers :meth:`flush` as a commit hook: an alert is
    acknowledged before the record that raised it is committed) and stopped at shutdown;
    a send after that raises, as Faust's producer does when stopped.
    """

    def __init__(self, settings: Settings, *, client_id: str) -> None:
        self.settings, self.client_id = settings, client_id
        self._producer: Any = None
        self._starting: asyncio.Lock | None = None
        self._stopped = False

    async def send(
        self, topic: str, *, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        """Queue a record (partitioned by ``key`` as Faust's producer would); return its
        delivery future."""
        producer = self._producer or await self._start()
        return await producer.send(topic, value, key=key, headers=headers)

    async def _start(self) -> Any:
        from aiokafka import AIOKafkaProducer

        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._stopped:
                raise RuntimeError(f"the {self.client_id} producer is stopped")
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **aiokafka_client_options(self.settings, client_id=self.client_id),
                    acks="all",
                    linger_ms=0,
                    max_batch_size=self.settings.producer_max_batch_bytes,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
        return self._producer

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged (or failed)."""
        if self._producer is not None:
            await self._producer.flush()

    async def stop(self) -> None:
        """Flush and close; later sends raise."""
        self._stopped = True
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


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
