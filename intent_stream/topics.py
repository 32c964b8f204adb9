"""Every topic the engine reads or writes, declared once.

:func:`topic_specs` lists them with their partition counts, including Faust's own internal
topics (table changelogs and the assignor's leader topic), because a broker that auto-creates
a missing topic with its own default partition count makes Faust crash-loop on
``PartitionsMismatch``. :func:`ensure_topics` creates them over the Kafka admin API before any
worker starts; :func:`declare` gives the Faust topic objects the agents import.
"""

from __future__ import annotations

import functools
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from intent_stream.settings import Settings

__all__ = [
    "ACCOUNT_STATE_TABLE",
    "PENDING_TABLE",
    "TopicMismatchError",
    "TopicSpec",
    "Topics",
    "aiokafka_client_options",
    "changelog_topic",
    "declare",
    "ensure_topics",
    "faust_broker_credentials",
    "kafka_client_options",
    "kafka_security_options",
    "kafka_ssl_context",
    "partition_for",
    "topic_specs",
]

logger = logging.getLogger(__name__)

#: Name of the Faust table holding per-account state (its changelog is derived from it).
ACCOUNT_STATE_TABLE = "account-state"
#: Name of the Faust table holding anonymous visitors' events awaiting identification.
PENDING_TABLE = "pending-visitors"


@functools.lru_cache(maxsize=131_072)
def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``key``.

    Producers that write keyed records with the Java, librdkafka-compatible, kafka-python or
    aiokafka default partitioner put a key where this says; the ingest agent and the collector
    use it to route events so that one account (or one visitor) always lands in one partition.

    >>> partition_for("acme.com", 8) == partition_for(b"acme.com", 8)
    True
    >>> 0 <= partition_for("acme.com", 8) < 8
    True

    murmur2 is pure Python (~18 us a key) and accounts and visitors recur: results are cached.
    """
    from kafka.partitioner.default import murmur2

    data = key.encode() if isinstance(key, str) else key
    hashed: int = murmur2(data)
    return (hashed & 0x7FFFFFFF) % partitions


class TopicMismatchError(RuntimeError):
    """A topic exists with a partition count other than the one the engine needs."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic's name, partition count and configuration, with what its records hold.

    ``schema`` names the JSON Schema of its values in ``intent_stream/schemas``
    (:func:`intent_stream.schemas.load_schema`); None where the values are other records'
    bytes, unchanged (dead-letter topics), or Faust's own (table changelogs).
    """

    name: str
    partitions: int
    key: str
    value: str
    config: dict[str, str] = field(default_factory=dict)
    schema: str | None = None


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's changelog topic for ``table``.

    >>> changelog_topic(Settings(), ACCOUNT_STATE_TABLE)
    'intent-stream-account-state-changelog'
    """
    return f"{settings.app_id}-{table}-changelog"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic a worker touches, in the order they should be created.

    >>> [t.name for t in topic_specs(Settings())][:4]
    ['intent.events.raw.v1', 'intent.events.v1', 'intent.sales-alerts.v1', 'intent.events.dlq.v1']
    """
    n = settings.partitions
    return [
        TopicSpec(
            settings.raw_topic,
            n,
            key="visitor key: anonymousId, else userId (any key is accepted)",
            value="one Segment-spec event (JSON object), a JSON array of them, or {'batch': [...]}",
            schema="raw-record.v1.json",
        ),
        TopicSpec(
            settings.events_topic,
            n,
            key="account id (UTF-8)",
            value="one Segment-spec event (JSON object), a JSON array of them, or {'batch': [...]};"
            " the ingest agent writes {'src': [[partition, offset, events], ...], 'batch': [...]}",
            schema="account-events.v1.json",
        ),
        TopicSpec(
            settings.alerts_topic,
            n,
            key="account id (UTF-8)",
            value="hot-lead alert (JSON object, see README)",
            schema="sales-alert.v1.json",
        ),
        TopicSpec(
            settings.dlq_topic,
            n,
            key="the rejected record's key, unchanged",
            value="the rejected record's bytes, unchanged (any bytes, so no value schema); "
            "reason and origin in dlq.* headers",
        ),
        TopicSpec(
            settings.alerts_dlq_topic,
            n,
            key="the alert's key (account id), unchanged",
            value="the refused alert's bytes, unchanged (no value schema of its own); ce_* "
            "headers kept, status and reason in dlq.* headers",
        ),
        TopicSpec(
            settings.transitions_topic,
            n,
            key="account id (UTF-8)",
            value="journey stage transition (JSON object, see README): from, to, reason, "
            "event time, probability, deterministic transition_id",
            schema="stage-transition.v1.json",
        ),
        TopicSpec(
            changelog_topic(settings, ACCOUNT_STATE_TABLE),
            n,
            key="account id (JSON string)",
            value="account state (JSON object)",
            config={"cleanup.policy": "compact"},
        ),
        TopicSpec(
            settings.identity_topic,
            n,
            key="edge kind and node, e.g. 'person|anon:c-81f2', 'account|user:u-1' (UTF-8)",
            value="identity edge (JSON object): kind, node, target, via, ts; null to undo",
            config={"cleanup.policy": "compact"},
            schema="identity-edge.v1.json",
        ),
        TopicSpec(
            changelog_topic(settings, PENDING_TABLE),
            n,
            key="visitor node (JSON string)",
            value="events awaiting identification (JSON object)",
            config={"cleanup.policy": "compact"},
        ),
    ]


def kafka_security_options(settings: Settings) -> dict[str, Any]:
    """Security options (TLS, SASL) in the names kafka-python and aiokafka both use.

    Only what is configured is included, so a PLAINTEXT setup passes nothing beyond the
    protocol.

    >>> kafka_security_options(Settings())
    {'security_protocol': 'PLAINTEXT'}
    >>> opts = kafka_security_options(Settings(kafka_security_protocol="SASL_SSL",
    ...     kafka_sasl_mechanism="SCRAM-SHA-512", kafka_username="u", kafka_password="p"))
    >>> sorted(opts)
    ['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol']
    """
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_username
        options["sasl_plain_password"] = settings.kafka_password
    return options


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the SSL and SASL_SSL protocols (None for the others).

    Verifies the brokers against ``kafka_ssl_cafile`` (else the system's CAs) and presents
    the client certificate when one is configured.
    """
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return context


def kafka_client_options(settings: Settings, *, client_id: str | None = None) -> dict[str, Any]:
    """Connection options for every kafka-python client the engine opens (admin, producers,
    consumers): brokers, client id, and the security settings.

    >>> opts = kafka_client_options(Settings(kafka="k1:9092,k2:9092"), client_id="probe")
    >>> opts["bootstrap_servers"], opts["client_id"], opts["security_protocol"]
    (['k1:9092', 'k2:9092'], 'probe', 'PLAINTEXT')
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.split(","),
        "client_id": client_id or settings.app_id,
        **kafka_security_options(settings),
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        # kafka-python builds its own context from files (and verifies the host name).
        options["ssl_cafile"] = settings.kafka_ssl_cafile or None
        options["ssl_certfile"] = settings.kafka_ssl_certfile or None
        options["ssl_keyfile"] = settings.kafka_ssl_keyfile or None
    return options


def aiokafka_client_options(settings: Settings, *, client_id: str | None = None) -> dict[str, Any]:
    """The same for aiokafka clients, which take a ready TLS context instead of files."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.split(","),
        "client_id": client_id or settings.app_id,
        **kafka_security_options(settings),
    }
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    return options


def faust_broker_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the security settings (None for PLAINTEXT)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = kafka_ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    # SASL_PLAINTEXT without a context, SASL_SSL with one (Faust picks the protocol from it).
    return faust.SASLCredentials(
        username=settings.kafka_username,
        password=settings.kafka_password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )


def ensure_topics(settings: Settings, *, timeout: float = 30.0) -> list[str]:
    """Create the missing topics of :func:`topic_specs`; return the names created.

    Existing topics are checked, not changed: a partition count that differs from the
    configured one raises :class:`TopicMismatchError`, because Faust tables require the
    changelog and the source topic to be co-partitioned.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        **kafka_client_options(settings), request_timeout_ms=int(timeout * 1000)
    )
    try:
        specs = topic_specs(settings)
        # A metadata request for all topics lists them without auto-creating any.
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        if missing:
            new = [
                NewTopic(
                    name=s.name,
                    num_partitions=s.partitions,
                    replication_factor=settings.replication,
                    topic_configs=s.config,
                )
                for s in missing
            ]
            try:
                admin.create_topics(new, timeout_ms=int(timeout * 1000))
                created = [s.name for s in missing]
            except TopicAlreadyExistsError:
                # Another worker won the race; fall through to the partition check.
                pass
        present = {s.name: s for s in specs if s.name in existing}
        if present:
            _check_partitions(admin, present)
        for name in created:
            logger.info("created topic %s", name)
        return created
    finally:
        admin.close()


def _check_partitions(admin: Any, specs: dict[str, TopicSpec]) -> None:
    for meta in admin.describe_topics(list(specs)):
        spec = specs[meta.get("name") or meta["topic"]]
        actual = len(meta["partitions"])
        if actual != spec.partitions:
            raise TopicMismatchError(
                f"topic {spec.name} has {actual} partitions but the engine is configured for "
                f"{spec.partitions}: set INTENT_STREAM_PARTITIONS={actual}, or use new topic "
                f"names / a new INTENT_STREAM_APP_ID"
            )


@dataclass(frozen=True)
class Topics:
    """The Faust topic objects agents read from and send to."""

    raw: Any
    events: Any
    alerts: Any
    dlq: Any
    identity: Any
    transitions: Any


def declare(app: Any, settings: Settings) -> Topics:
    """Declare the engine's topics on ``app``; values stay raw bytes.

    Decoding is ours, not Faust's: a value Faust fails to decode crashes the agent and can
    commit offsets past valid events (see KAFKA_NOTES), whereas raw bytes always arrive and
    every failure is routed to the dead-letter topic by our own code.
    """
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    return Topics(
        raw=app.topic(settings.raw_topic, partitions=settings.partitions, **raw),
        identity=app.topic(settings.identity_topic, partitions=settings.partitions, **raw),
        events=app.topic(settings.events_topic, partitions=settings.partitions, **raw),
        alerts=app.topic(settings.alerts_topic, partitions=settings.partitions, **raw),
        dlq=app.topic(settings.dlq_topic, partitions=settings.partitions, **raw),
        transitions=app.topic(settings.transitions_topic, partitions=settings.partitions, **raw),
    )
