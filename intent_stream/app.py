"""Building the Faust app: settings in, an :class:`Engine` with topics, tables and agents out."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import Any

import faust
import redis.asyncio as aioredis
from faust.sensors.prometheus import PrometheusMonitor
from prometheus_client import CollectorRegistry

from intent_stream.dedup import MessageDeduplicator
from intent_stream.identity import FREEMAIL_DOMAINS, IdentityGraph, Pseudonymiser
from intent_stream.ingest import IngestProcessor
from intent_stream.metrics import Metrics
from intent_stream.pipeline import AccountProcessor
from intent_stream.readmodel import RedisReadModel
from intent_stream.scoring import HotLeadPolicy, IntentModel
from intent_stream.scoring.stages import StageMachine, load_stage_model
from intent_stream.settings import Settings
from intent_stream.topics import ACCOUNT_STATE_TABLE, PENDING_TABLE, Topics, declare

__all__ = ["Engine", "create_app", "redis_client"]

logger = logging.getLogger(__name__)


@dataclass
class Engine:
    """Everything a worker runs, wired once from :class:`Settings`."""

    settings: Settings
    app: Any  # faust.App (untyped library)
    topics: Topics
    accounts: Any  # faust Table: account id -> state dict
    metrics: Metrics
    processor: AccountProcessor
    read_model: RedisReadModel
    pending: Any  # faust Table: visitor node -> events awaiting identification
    ingest: IngestProcessor
    dedup: MessageDeduplicator


def redis_client(settings: Settings) -> aioredis.Redis:
    """An asyncio Redis client for ``settings.redis`` (never the 'embedded' placeholder)."""
    if settings.redis_embedded:
        raise ValueError("resolve the embedded Redis to a URL before creating clients")
    return aioredis.from_url(
        settings.redis,
        password=settings.redis_password or None,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
    )


def create_app(settings: Settings, *, registry: CollectorRegistry | None = None) -> Engine:
    """The Faust app for ``settings``, with every topic, table and agent declared."""
    if settings.kafka_embedded:
        raise ValueError("resolve the embedded broker to an address before creating the app")
    # First, before anything is built: a bad stage config stops the worker with its line and
    # problem (StageConfigError) instead of half-starting it.
    stage_model = load_stage_model(settings.stage_config)
    datadir = settings.data_dir or tempfile.mkdtemp(prefix="intent-stream-data-")
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    app = faust.App(
        settings.app_id,
        # Faust's Prometheus sensor on our registry: one /metrics (agents/web.py) serves the
        # engine's and Faust's figures. setup_prometheus_sensors() is not used because it
        # would add a second /metrics route and name the metrics after the app id.
        monitor=PrometheusMonitor(metrics=metrics.faust),
        broker=[f"kafka://{host}" for host in settings.kafka.split(",")],
        store=settings.store,
        datadir=datadir,
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        # Topics are created by intent_stream.topics.ensure_topics with explicit partition
        # counts; Faust must not race it with broker defaults.
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 5),
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=settings.producer_linger_ms,
        stream_recovery_delay=0.5,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_stats_enabled=False,
        web_tables_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    topics = declare(app, settings)
    roles = settings.agent_set
    # A table is declared only by the workers whose agent uses it: Faust recovers every
    # declared table's changelog at start.
    accounts = (
        app.Table(
            ACCOUNT_STATE_TABLE,
            default=None,
            partitions=settings.partitions,
            key_type=str,  # JSON-encoded in the changelog (Faust's default for typed keys)
        )
        if "score" in roles
        else {}
    )
    processor = AccountProcessor(
        model=IntentModel(),
        policy=HotLeadPolicy(
            enter=settings.alert_enter,
            exit=settings.alert_exit,
            cooldown_s=settings.alert_cooldown,
        ),
        stages=StageMachine(model=stage_model),
    )
    pending = (
        app.Table(PENDING_TABLE, default=None, partitions=settings.partitions, key_type=str)
        if "ingest" in roles
        else {}
    )
    client = redis_client(settings)
    read_model = RedisReadModel(
        client,
        prefix=settings.redis_prefix,
        metrics=metrics,
        render=processor.render,
    )
    ingest = IngestProcessor(
        graph=IdentityGraph(freemail=FREEMAIL_DOMAINS | settings.freemail_domain_set),
        pseudonymiser=Pseudonymiser(settings.pseudonymise_key.encode()),
        partitions=settings.partitions,
        lookback=settings.identity_lookback,
        pending_max=settings.pending_max_events,
        max_skew=settings.max_clock_skew,
    )
    dedup = MessageDeduplicator(
        client,
        prefix=settings.redis_prefix,
        window=settings.dedup_window,
        on_error=metrics.dedup_errors.inc,
    )
    engine = Engine(
        settings=settings,
        app=app,
        topics=topics,
        accounts=accounts,
        metrics=metrics,
        processor=processor,
        read_model=read_model,
        pending=pending,
        ingest=ingest,
        dedup=dedup,
    )

    from intent_stream.agents import collector, score, web
    from intent_stream.agents import ingest as ingest_agent

    if "ingest" in roles:
        ingest_agent.register(engine)
    if "score" in roles:
        score.register(engine)
    collector.register(engine)
    web.register(engine)
    return engine
