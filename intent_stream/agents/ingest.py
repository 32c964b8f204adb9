"""The ingest agent and the identity reader.

``ingest`` reads raw Segment messages, lets :class:`intent_stream.ingest.IngestProcessor`
check, normalise, de-duplicate (with Redis) and route them, then sends what it decided: event
batches to the account-keyed topic (one record per destination partition for the raw records
taken together), new identity edges to the compacted identity topic, rejects to the
dead-letter topic.

``identity-reader`` keeps this worker's identity graph in step with every other worker's: it
reads every partition of the identity topic from the beginning, outside any consumer group.
The ingest agent waits until it has caught up once, so a restarted worker resolves visitors
exactly as before its restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from intent_stream.agents.sinks import observe_send, produce, produce_now, send_dead_letters
from intent_stream.identity import IdentityEdge
from intent_stream.ingest import ForwardBatcher
from intent_stream.pipeline import DeadLetter
from intent_stream.privacy import ForgetRequest, forget_pending, is_forget
from intent_stream.readmodel import identity_key
from intent_stream.topics import aiokafka_client_options

if TYPE_CHECKING:
    from intent_stream.app import Engine
    from intent_stream.ingest import Forward, IngestResult

__all__ = ["register"]

logger = logging.getLogger(__name__)

#: Sweep the pending-visitor table for expired visitors every this many raw records.
_SWEEP_EVERY = 5000


def register(engine: Engine) -> None:
    app, topics, metrics = engine.app, engine.topics, engine.metrics
    processor, dedup, pending = engine.ingest, engine.dedup, engine.pending
    identity_ready = asyncio.Event()

    settings = engine.settings
    batch_records, batch_wait = settings.ingest_batch_records, settings.ingest_batch_wait_ms / 1e3

    @app.agent(topics.raw, name="ingest")  # type: ignore[untyped-decorator]
    async def ingest(stream: Any) -> None:
        await identity_ready.wait()
        records = 0
        # Raw records that arrived together are routed one by one, and the events they
        # forward to each account partition go out as one record (ForwardBatcher).
        async for events in stream.take_events(batch_records, within=batch_wait):
            forwards = ForwardBatcher(max_bytes=settings.producer_max_batch_bytes)
            for run, forget in _runs([event.message for event in events]):
                # One Redis round trip for the run's message ids, then each record in order.
                checked = [
                    processor.check(m.value, received_at=m.timestamp or time.time()) for m in run
                ]
                found = await dedup.duplicates_many(
                    [
                        ([m.message_id for m in c.messages], f"{r.partition}:{r.offset}")
                        for r, c in zip(run, checked, strict=True)
                    ]
                )
                for message, check, duplicates in zip(run, checked, found, strict=True):
                    # The pending table's changelog partition is the raw record's: no
                    # event of the batch is the stream's current one.
                    with pending.in_partition(message.partition):
                        result = processor.route(
                            check.messages,
                            pending=pending,
                            partition=message.partition,
                            offset=message.offset,
                            duplicates=duplicates,
                        )
                        records += 1
                        if records % _SWEEP_EVERY == 0 and check.messages:
                            expired = processor.sweep(
                                pending, now=check.messages[-1].ts, partition=message.partition
                            )
                            metrics.pending_events.labels(outcome="expired").inc(expired)
                    full = forwards.add(message.partition, message.offset, result.forwards)
                    await _forward(engine, full)
                    await _send(engine, result)
                    await send_dead_letters(engine, check.dead_letters, message)
                    metrics.ingest_records.inc()
                    metrics.child(metrics.agent_records, "ingest").inc()
                if forget is not None:
                    # Behind every event forwarded before it, as the request requires.
                    await _forward(engine, forwards.drain())
                    with pending.in_partition(forget.partition):
                        await _forget(engine, forget.value, forget)
            await _forward(engine, forwards.drain())

    @app.task  # type: ignore[untyped-decorator]
    async def identity_reader() -> None:
        await _read_identity(engine, identity_ready)


def _runs(messages: list[Any]) -> list[tuple[list[Any], Any]]:
    """``messages`` cut at each forget request: (the records before it, the request or None).

    >>> from types import SimpleNamespace as M
    >>> forget = M(value=b'{"forget": {}}')
    >>> [([m.value for m in run], f and f.value) for run, f in _runs([M(value=b"1"), forget,
    ...     M(value=b"2")])]
    [([b'1'], b'{"forget": {}}'), ([b'2'], None)]
    """
    out: list[tuple[list[Any], Any]] = []
    run: list[Any] = []
    for message in messages:
        if is_forget(message.value):
            out.append((run, message))
            run = []
        else:
            run.append(message)
    if run:
        out.append((run, None))
    return out


async def _forward(engine: Engine, records: list[Forward]) -> None:
    """Send gathered records to the account-keyed event topic, in their partitions."""
    metrics, topic = engine.metrics, engine.settings.events_topic
    for record in records:
        await observe_send(
            produce_now(
                engine, topic, key=record.key, value=record.value, partition=record.partition
            ),
            metrics=metrics,
            topic="events",
        )
        metrics.ingest_forwarded.inc()


async def _send(engine: Engine, result: IngestResult) -> None:
    """Send what routing a raw record produced besides its forwards, and count it."""
    metrics, settings = engine.metrics, engine.settings
    graph, prefix = engine.ingest.graph, settings.redis_prefix
    kinds: dict[str, int] = {}  # edges by kind, counted once per record (labels() costs)
    for edge in result.edges:
        await observe_send(
            produce(engine, settings.identity_topic, key=edge.key.encode(), value=edge.to_bytes()),
            metrics=metrics,
            topic="identity",
        )
        kinds[edge.kind] = kinds.get(edge.kind, 0) + 1
        for node in (edge.node, edge.target if edge.kind == "person" else None):
            if node is not None:
                snapshot = orjson.dumps(graph.describe(node))
                engine.read_model.put(identity_key(prefix, node), snapshot)
    for kind, n in kinds.items():
        metrics.identity_edges.labels(kind=kind).inc(n)
    for kind, n in result.accepted.items():
        metrics.ingest_messages.labels(type=kind).inc(n)
    if result.duplicates:
        metrics.ingest_duplicates.inc(result.duplicates)
    for outcome in ("pended", "released", "expired"):
        n = getattr(result, outcome)
        if n:
            metrics.pending_events.labels(outcome=outcome).inc(n)
    if result.edges:
        metrics.identity_nodes.set(len(graph))


async def _forget(engine: Engine, value: bytes, message: Any) -> None:
    """This raw partition's part of a forget request (see :mod:`intent_stream.privacy`)."""
    request = ForgetRequest.from_bytes(value)
    if request is None:
        letter = DeadLetter("bad_control", "unreadable forget request", value)
        await send_dead_letters(engine, [letter], message)
        return
    metrics, topics, prefix = engine.metrics, engine.topics, engine.settings.redis_prefix
    edges = [edge for node in request.nodes for edge in engine.ingest.graph.forget(node)]
    for edge in edges:  # the requester sent tombstones for the nodes it knew; these too
        await observe_send(
            topics.identity.send(key=edge.key.encode(), value=None),
            metrics=metrics,
            topic="identity",
        )
    nodes = sorted({*request.nodes, *(edge.node for edge in edges)})
    for node in nodes:
        engine.read_model.put(identity_key(prefix, node), None)
    removed = forget_pending(engine.pending, nodes, partition=message.partition)
    # Forwarded behind every event this raw partition forwarded before: the scoring agent
    # sees the person's earlier events first, then the request.
    for partition in range(engine.settings.partitions):
        await observe_send(
            topics.events.send(key=b"forget", value=value, partition=partition),
            metrics=metrics,
            topic="events",
        )
    if edges:
        metrics.identity_nodes.set(len(engine.ingest.graph))
    logger.info(
        "forget request %s: %d identity edge(s) and %d pending event(s) removed in raw "
        "partition %d",
        request.request_id,
        len(edges),
        removed,
        message.partition,
    )


async def _read_identity(engine: Engine, ready: asyncio.Event) -> None:
    """Apply every identity edge of every partition to the local graph, forever."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from intent_stream.app import confirm_end_offsets

    settings = engine.settings
    consumer = AIOKafkaConsumer(
        **aiokafka_client_options(settings, client_id=f"{settings.app_id}-identity-reader"),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        topic = settings.identity_topic
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # Caught up once every partition is read up to its end at start: ends confirmed by
        # reading (some brokers answer less than the end). Not "a poll that returns
        # nothing": while other workers keep writing edges that never happens.
        ends = await confirm_end_offsets(settings, await consumer.end_offsets(partitions))
        applied = 0
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    try:
                        edge = IdentityEdge.from_bytes(record.key or b"", record.value)
                    except (ValueError, KeyError, TypeError) as exc:  # not written by a worker
                        logger.warning(
                            "skipping an unreadable identity edge at %s[%d]@%d (%s)",
                            record.topic,
                            record.partition,
                            record.offset,
                            type(exc).__name__,
                        )
                        continue
                    applied += engine.ingest.graph.apply(edge)
            if not ready.is_set():
                positions = {tp: await consumer.position(tp) for tp in partitions}
                if all(positions[tp] >= ends[tp] for tp in partitions):
                    engine.metrics.identity_nodes.set(len(engine.ingest.graph))
                    logger.info("identity graph loaded: %d edge(s) applied", applied)
                    ready.set()
    finally:
        await consumer.stop()
