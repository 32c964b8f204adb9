"""Forgetting a person: ``intent-stream forget --person ID`` and ``DELETE /people/{id}``.

A person leaves traces in four places: the identity graph (edges on the compacted identity
topic, held in memory by every worker), the pending-visitors table (anonymous events waiting
for identification), per-account state (the committee of engaged people in
:class:`intent_stream.scoring.AccountSignals`) and the Redis read model (``identity:`` keys).

Tables may only be written inside the stream that owns their partition, or their changelogs
and the live state disagree after a restart. So a request is a *control record*
(:class:`ForgetRequest`) sent to every partition of the raw topic:

1. the requester (CLI or web API) resolves the person's nodes (the ids as given and
   pseudonymised, the cookies linked to them), writes tombstones for their identity edges,
   deletes their Redis identity keys and sends the control record to every raw partition and
   to every partition of the account topic;
2. the ingest agent, on each raw partition, forgets the nodes in its graph (publishing
   tombstones for edges it knew of), drops their waiting events in that partition's slice of
   the pending table, deletes their Redis keys again, and forwards the request to every
   account partition. Being behind every earlier record of its raw partition, the forwarded
   request reaches each account partition after every event of the person forwarded before it;
3. the scoring agent, on each account partition, removes the people from the accounts that
   partition owns (:meth:`intent_stream.pipeline.AccountProcessor.forget`), so the tombstone
   and the new state go to that partition's changelog, and the read model is updated.

Every step is idempotent: replays after a crash, and the request reaching a partition both
directly and forwarded, change nothing more. Alerts carry no person ids, so future alerts
cannot name the person.

>>> r = ForgetRequest(request_id="r1", nodes=("user:u1", "anon:c1"), partitions=4)
>>> is_forget(r.to_bytes()), ForgetRequest.from_bytes(r.to_bytes()) == r, r.people
(True, True, ('u1', 'c1'))
>>> is_forget(b'{"type": "page"}')
False
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from intent_stream.identity import IdentityEdge, IdentityGraph, Pseudonymiser, node_of
from intent_stream.settings import Settings

__all__ = [
    "FORGET_PREFIX",
    "ForgetReport",
    "ForgetRequest",
    "forget_nodes",
    "forget_pending",
    "forget_person",
    "is_forget",
    "load_identity_graph",
    "request_forget",
    "tombstone_keys",
]

logger = logging.getLogger(__name__)

#: Every control record starts with these bytes; no Segment event does (they need a type).
FORGET_PREFIX = b'{"forget":'


@dataclass(frozen=True, slots=True)
class ForgetRequest:
    """Forget the graph ``nodes`` (``user:...``, ``anon:...``) everywhere.

    ``partitions`` is the account topic's partition count: the scoring agent changes only
    the accounts its current partition owns.
    """

    request_id: str
    nodes: tuple[str, ...]
    partitions: int

    @property
    def people(self) -> tuple[str, ...]:
        """The person ids as account state stores them (userId or anonymousId)."""
        return tuple(node.partition(":")[2] for node in self.nodes)

    def to_bytes(self) -> bytes:
        body = {"id": self.request_id, "nodes": list(self.nodes), "partitions": self.partitions}
        return FORGET_PREFIX + orjson.dumps(body) + b"}"

    @classmethod
    def from_bytes(cls, value: bytes) -> ForgetRequest | None:
        """The request in a control record, or None if the bytes are not a valid one."""
        try:
            body = orjson.loads(value)["forget"]
            nodes = tuple(str(n) for n in body["nodes"])
            partitions = body["partitions"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if type(partitions) is not int or partitions < 1:  # a count (JSON integer, not bool)
            return None
        return cls(request_id=str(body["id"]), nodes=nodes, partitions=partitions)


def is_forget(value: bytes | None) -> bool:
    """Whether a record is a forget control record (cheap: a prefix check)."""
    return value is not None and value.startswith(FORGET_PREFIX)


def forget_nodes(graph: IdentityGraph, person_id: str, pseudonymiser: Pseudonymiser) -> list[str]:
    """The graph nodes of ``person_id``: as a user and a cookie, as given and pseudonymised,
    and every cookie the graph links to the person.

    >>> g = IdentityGraph()
    >>> _ = g.observe({"type": "identify", "anonymousId": "c1", "userId": "u1"}, ts=1.0)
    >>> forget_nodes(g, "u1", Pseudonymiser(b""))
    ['anon:c1', 'anon:u1', 'user:u1']
    """
    ids = {person_id}
    if pseudonymiser.enabled:
        ids.add(pseudonymiser.person(person_id))
    nodes: set[str] = set()
    for value in ids:
        for kind in ("user", "anon"):
            node = node_of(kind, value)
            nodes.add(node)
            nodes.update(graph.describe(node)["cookies"])
    return sorted(nodes)


def tombstone_keys(nodes: Iterable[str]) -> list[str]:
    """The identity-topic keys of every edge a node can have.

    >>> tombstone_keys(["user:u1"])
    ['account|user:u1', 'person|user:u1']
    """
    return sorted(f"{kind}|{node}" for node in nodes for kind in ("account", "person"))


def forget_pending(
    pending: MutableMapping[str, Any], nodes: Iterable[str], *, partition: int
) -> int:
    """Drop the waiting events of ``nodes`` held by raw ``partition``; return how many.

    An entry belongs to the partition of the raw record that last wrote it (its ``off``):
    deleting it there puts the tombstone in the changelog partition holding its value.

    >>> pending = {"anon:c1": {"off": [2, 7], "events": [[1.0, {}], [2.0, {}]]}}
    >>> forget_pending(pending, ["anon:c1"], partition=1), forget_pending(pending, ["anon:c1"],
    ...     partition=2), pending
    (0, 2, {})
    """
    removed = 0
    for node in nodes:
        entry = pending.get(node)
        if entry is not None and entry["off"][0] == partition:
            removed += len(entry["events"])
            del pending[node]
    return removed


@dataclass
class ForgetReport:
    """What a forget request found and removed (printed by the CLI, returned by the API)."""

    request_id: str
    nodes: list[str]
    accounts: list[str] = field(default_factory=list)
    identity_tombstones: int = 0
    redis_keys_deleted: int = 0
    control_records: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_identity_graph(settings: Settings, *, timeout: float = 30.0) -> IdentityGraph:
    """The identity graph as the workers hold it: every edge of the identity topic, in order."""
    from kafka import KafkaConsumer, TopicPartition

    from intent_stream.identity import FREEMAIL_DOMAINS
    from intent_stream.topics import kafka_client_options

    graph = IdentityGraph(freemail=FREEMAIL_DOMAINS | settings.freemail_domain_set)
    consumer = KafkaConsumer(
        **kafka_client_options(settings, client_id=f"{settings.app_id}-forget"),
        group_id=None,
        enable_auto_commit=False,
    )
    try:
        partitions = [
            TopicPartition(settings.identity_topic, p) for p in range(settings.partitions)
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    graph.apply(IdentityEdge.from_bytes(record.key or b"", record.value))
            # Some brokers list the first offset of the last record batch + 1 as the end;
            # reading that offset returns its whole batch, so the position passes the true
            # end. Not "an empty poll" too: on a busy topic that may never come.
            if all(consumer.position(tp) >= ends[tp] for tp in partitions):
                return graph
        raise TimeoutError(f"could not read the identity topic within {timeout:.0f}s")
    finally:
        consumer.close()


def forget_person(settings: Settings, person_id: str, *, timeout: float = 30.0) -> ForgetReport:
    """Do the requester's part for ``person_id`` (see the module docs); return the report.

    The workers finish the job asynchronously, in stream order, as they reach the control
    records.
    """
    import redis
    from kafka import KafkaProducer

    from intent_stream.app import redis_options
    from intent_stream.readmodel import identity_key
    from intent_stream.topics import kafka_client_options

    graph = load_identity_graph(settings, timeout=timeout)
    nodes = forget_nodes(graph, person_id, Pseudonymiser(settings.pseudonymise_key.encode()))
    report = ForgetReport(request_id=uuid.uuid4().hex, nodes=nodes)
    report.accounts = sorted(
        {a for a in (graph.describe(n)["account"] for n in nodes) if a is not None}
    )
    request = ForgetRequest(
        request_id=report.request_id, nodes=tuple(nodes), partitions=settings.partitions
    )
    producer = KafkaProducer(
        **kafka_client_options(settings, client_id=f"{settings.app_id}-forget"), acks="all"
    )
    try:
        for key in tombstone_keys(nodes):
            producer.send(settings.identity_topic, key=key.encode(), value=None)
            report.identity_tombstones += 1
        for topic in (settings.raw_topic, settings.events_topic):
            for partition in range(settings.partitions):
                producer.send(topic, key=b"forget", value=request.to_bytes(), partition=partition)
                report.control_records += 1
        producer.flush(timeout=timeout)
    finally:
        producer.close(timeout=5)
    client = redis.Redis.from_url(settings.redis, **redis_options(settings))
    try:
        keys = [identity_key(settings.redis_prefix, node) for node in nodes]
        report.redis_keys_deleted = int(client.delete(*keys))
    finally:
        client.close()
    logger.info(
        "forget request %s: %d node(s), %d tombstone(s), %d control record(s)",
        report.request_id,
        len(nodes),
        report.identity_tombstones,
        report.control_records,
    )
    return report


async def request_forget(engine: Any, person_id: str) -> ForgetReport:
    """The requester's part, from inside a worker (``DELETE /people/{id}``).

    Same steps as :func:`forget_person`, with the worker's own graph (complete on workers
    running the ingest agent) and its Faust producer.
    """
    from redis.exceptions import RedisError

    from intent_stream.readmodel import identity_key

    settings, topics = engine.settings, engine.topics
    graph: IdentityGraph = engine.ingest.graph
    nodes = forget_nodes(graph, person_id, engine.ingest.pseudonymiser)
    report = ForgetReport(request_id=uuid.uuid4().hex, nodes=nodes)
    report.accounts = sorted(
        {a for a in (graph.describe(n)["account"] for n in nodes) if a is not None}
    )
    request = ForgetRequest(
        request_id=report.request_id, nodes=tuple(nodes), partitions=settings.partitions
    )
    sent = [await topics.identity.send(key=k.encode(), value=None) for k in tombstone_keys(nodes)]
    report.identity_tombstones = len(sent)
    for topic in (topics.raw, topics.events):
        for partition in range(settings.partitions):
            sent.append(
                await topic.send(key=b"forget", value=request.to_bytes(), partition=partition)
            )
            report.control_records += 1
    for delivery in sent:  # delivered (acknowledged) before we answer
        await delivery
    keys = [identity_key(settings.redis_prefix, node) for node in nodes]
    try:
        report.redis_keys_deleted = int(await engine.read_model.client.delete(*keys))
    except (RedisError, OSError):
        # The ingest agents delete them too, through the read model's retrying writes.
        logger.warning(
            "forget request %s: Redis unavailable, deletion deferred", request.request_id
        )
    logger.info("forget request %s accepted: %d node(s)", report.request_id, len(nodes))
    return report
