"""Building the Faust app: settings in, an :class:`Engine` with topics, tables and agents out."""

from __future__ import annotations

import asyncio
import atexit
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import redis.asyncio as aioredis
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.services import WaitResults
from prometheus_client import CollectorRegistry

from intent_stream import eager
from intent_stream.agents.sinks import PromptProducer
from intent_stream.alerts.config import alert_policy, check_alert_stages
from intent_stream.dedup import MessageDeduplicator
from intent_stream.identity import FREEMAIL_DOMAINS, IdentityGraph, Pseudonymiser
from intent_stream.ingest import IngestProcessor
from intent_stream.marketing import CampaignLabels
from intent_stream.metrics import FaustMonitor, Metrics
from intent_stream.pipeline import AccountProcessor
from intent_stream.readmodel import RedisReadModel
from intent_stream.scoring import (
    FEATURES,
    DelayedLabels,
    FitModel,
    FitModelError,
    IntentModel,
    load_fit_model,
)
from intent_stream.scoring.stages import StageMachine, StageModel, load_stage_model
from intent_stream.settings import Settings
from intent_stream.tables import JsonTable, json_table
from intent_stream.topics import (
    ACCOUNT_STATE_TABLE,
    PENDING_TABLE,
    Topics,
    aiokafka_client_options,
    declare,
    faust_broker_credentials,
)

__all__ = [
    "Engine",
    "confirm_end_offsets",
    "create_app",
    "initial_fit_model",
    "redis_client",
    "redis_options",
]

logger = logging.getLogger(__name__)


@dataclass
class Engine:
    """Everything a worker runs, wired once from :class:`Settings`."""

    settings: Settings
    app: Any  # faust.App (untyped library)
    topics: Topics
    accounts: JsonTable  # account id -> state document (a Faust table of bytes)
    metrics: Metrics
    processor: AccountProcessor
    read_model: RedisReadModel
    pending: JsonTable  # visitor node -> events awaiting identification
    ingest: IngestProcessor
    dedup: MessageDeduplicator
    alerts_out: PromptProducer  # the alerts' own producer, without linger


def redis_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``redis.from_url(settings.redis, ...)`` (sync or asyncio):
    password, ACL user and, for rediss:// URLs, the CA bundle. Every Redis client the engine
    opens takes them.

    >>> redis_options(Settings(redis="rediss://r:6380/0", redis_username="engine",
    ...     redis_password="pw", redis_ssl_cafile="/etc/ca.pem"))["ssl_ca_certs"]
    '/etc/ca.pem'
    >>> redis_options(Settings(redis="redis://r:6379/0"))
    {}
    """
    options: dict[str, Any] = {}
    if settings.redis_password:
        options["password"] = settings.redis_password
    if settings.redis_username:
        options["username"] = settings.redis_username
    # Only TLS connections accept ssl_* arguments (plain ones raise TypeError).
    if settings.redis.startswith("rediss://") and settings.redis_ssl_cafile:
        options["ssl_ca_certs"] = settings.redis_ssl_cafile
    return options


def redis_client(settings: Settings) -> aioredis.Redis:
    """An asyncio Redis client for ``settings.redis`` (never the 'embedded' placeholder)."""
    if settings.redis_embedded:
        raise ValueError("resolve the embedded Redis to a URL before creating clients")
    return aioredis.from_url(
        settings.redis,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        **redis_options(settings),
    )


def initial_fit_model(settings: Settings) -> FitModel:
    """The fit model at ``settings.fit_model_path`` if there is one, else a fresh one.

    A file that is there but unusable is logged (with the reason) and replaced by a fresh
    model: the worker must not refuse to score intent over a bad fit file.
    """
    path = Path(settings.fit_model_path)
    if not path.exists():
        return FitModel()
    try:
        model = load_fit_model(path)
    except FitModelError as exc:
        logger.warning("%s; the fit model starts fresh", exc)
        return FitModel()
    logger.info("loaded the fit model from %s (%d labels)", path, model.n_labels)
    return model


async def _probe(settings: Settings, role: str) -> Any:
    """A started aiokafka consumer outside any group, for short reads of given partitions."""
    from aiokafka import AIOKafkaConsumer

    probe = AIOKafkaConsumer(
        **aiokafka_client_options(settings, client_id=f"{settings.app_id}-{role}"),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # a range that retention removed reads from the start
        fetch_max_wait_ms=50,
    )
    await probe.start()
    return probe


async def confirm_end_offsets(
    settings: Settings, listed: Mapping[Any, int], *, timeout: float = 10.0
) -> dict[Any, int]:
    """Each partition's log end offset, confirmed by reading its last record batch.

    ``listed`` are the ends a ListOffsets(latest) request answered (``end_offsets``). Some
    Kafka-protocol brokers answer the first offset of the last record batch + 1 there, not
    the end of the log, which makes a reader that trusts it stop short: Faust ends a table's
    changelog recovery early (the table silently misses its last updates) and "caught up"
    comes too soon. So a separate consumer reads each partition from ``listed - 1`` (on a
    correct broker: just the last record) until it is past ``listed``; the end is where it
    stopped, never below ``listed``. After ``timeout`` seconds the partitions not confirmed
    keep their listed end.
    """
    ends = {tp: int(end) for tp, end in listed.items()}
    todo = [tp for tp, end in ends.items() if end > 0]
    if not todo:
        return ends
    probe = await _probe(settings, "end-offsets")
    try:
        probe.assign(todo)
        for tp in todo:
            probe.seek(tp, ends[tp] - 1)
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            await probe.getmany(*todo, timeout_ms=200)
            for tp in list(todo):
                position = await probe.position(tp)
                if position >= ends[tp]:
                    ends[tp] = position
                    todo.remove(tp)
        if todo:
            logger.warning("could not confirm the end offsets of %s; using the listed ones", todo)
    finally:
        await probe.stop()
    return ends


async def read_range(settings: Settings, tp: Any, start: int, end: int) -> list[Any]:
    """The records of partition ``tp`` from offset ``start`` up to ``end`` (excluded), read
    with a consumer of their own (outside any group)."""
    from aiokafka import TopicPartition

    tp = TopicPartition(tp.topic, tp.partition)  # aiokafka asserts its own type (not Faust's TP)
    probe = await _probe(settings, "refill")
    out: list[Any] = []
    try:
        probe.assign([tp])
        probe.seek(tp, start)
        deadline = time.monotonic() + 30.0
        while await probe.position(tp) < end and time.monotonic() < deadline:
            batches = await probe.getmany(tp, timeout_ms=200)
            out.extend(r for r in batches.get(tp, []) if start <= r.offset < end)
    finally:
        await probe.stop()
    return out


def _holes(offsets: list[int], start: int, end: int) -> list[tuple[int, int]]:
    """The runs of ``[start, end)`` that ``offsets`` (ascending) leave out, as (first, end).

    >>> _holes([3, 4, 7], 2, 9)
    [(2, 3), (5, 7), (8, 9)]
    >>> _holes([], 2, 4), _holes([2, 3], 2, 4)
    ([(2, 4)], [])
    """
    holes, expected = [], start
    for offset in offsets:
        if offset > expected:
            holes.append((expected, offset))
        expected = max(expected, offset + 1)
    if expected < end:
        holes.append((expected, end))
    return holes


def stalled(
    expected: Mapping[Any, int], checked: Mapping[Any, int], highwater: Callable[[Any], Any]
) -> dict[Any, int]:
    """The partitions whose next expected offset has not moved since the last check
    (``checked``) although their fetch's high watermark is past it, with that offset.

    >>> hw = {"a": 10, "b": 10, "c": 5, "d": None}.get
    >>> stalled({"a": 3, "b": 4, "c": 5, "d": 1}, {"a": 3, "b": 2, "c": 5, "d": 1}, hw)
    {'a': 3}
    """
    return {
        tp: offset
        for tp, offset in expected.items()
        if checked.get(tp) == offset and (highwater(tp) or 0) > offset
    }


def _position(consumer: Any, tp: Any) -> int | None:
    """An aiokafka consumer's position in ``tp`` without waiting for one (None if unknown)."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
        return int(state.position) if state is not None and state.has_valid_position else None
    except (AttributeError, TypeError, AssertionError):
        return None


def _close(awaitables: tuple[Any, ...]) -> None:
    """Close the coroutines among ``awaitables`` that will not be awaited (no warning)."""
    for awaitable in awaitables:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()


#: Seconds between a worker's checks for stream partitions that stopped short of their end.
STALL_CHECK_S = 5.0


def _transport(
    settings: Settings,
    metrics: Metrics,
    before_commit: list[Callable[[], Awaitable[object]]] | None = None,
) -> type[Any]:
    """Faust's aiokafka transport with seven changes to its consumer: before each offset
    commit it awaits the ``before_commit`` callables (the worker flushes its Redis read
    model there, so no committed record's snapshot is left unwritten); its fetch wait is
    ``settings.fetch_max_wait_ms``; and, so that a restarted or joining worker resumes every
    partition with complete tables and no record skipped, changelog highwaters come from
    :func:`confirm_end_offsets` (table recovery reads each changelog up to its highwater),
    seeking to committed offsets also moves partitions that have none, and stream records
    are delivered in offset order from the committed offset (a fetch that skips ahead is
    refilled, and so is a partition that stalls short of its end; ``Consumer`` below); and
    each record is handed to the streams without Faust's four tasks per record when nothing
    makes it wait (``Consumer.wait_first``)."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            # Faust fixes fetch_max_wait_ms=1500 with no setting. On a broker that holds a
            # fetch for its whole wait even when records arrive meanwhile (the embedded one
            # does when the consumer has several partitions), each hop through a topic added
            # hundreds of ms (raw -> events p50 ~380 ms, events -> alert ~750 ms; ~6 and
            # ~18 ms at 20 ms). aiokafka builds its fetcher at start, from this attribute.
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms
            return consumer

        async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
            listed = await super()._highwaters(partitions)
            if self.consumer.in_transaction:
                return listed
            return await confirm_end_offsets(settings, listed)

        async def seek_to_committed(self) -> Mapping[TP, int]:
            committed: Mapping[TP, int] = await self.call_thread(self._seek_to_committed)
            return committed

        async def _seek_to_committed(self) -> Mapping[TP, int]:
            # aiokafka's seek_to_committed() leaves a partition without a committed offset
            # (or committed at 0) where its position is. Faust seeks to committed offsets to
            # re-read what it fetched but dropped (records fetched during recovery, or while
            # its flow was stopped); such a partition would skip those records for good: a
            # restarted worker then never processes the first records of a partition that
            # was not committed before the crash. Seek those to where the group starts.
            consumer = self._ensure_consumer()
            committed: Mapping[TP, int | None] = await consumer.seek_to_committed()
            changelogs = self.app.tables.changelog_topics  # Faust positions these itself
            streams = {tp: o for tp, o in committed.items() if tp.topic not in changelogs}
            for tp, offset in streams.items():
                if offset == 0:
                    consumer.seek(tp, 0)
            unset = [tp for tp, offset in streams.items() if offset is None or offset < 0]
            if unset:
                positions = {tp: _position(consumer, tp) for tp in unset}
                moved = {tp: p for tp, p in positions.items() if p}
                logger.log(
                    logging.INFO if moved else logging.DEBUG,
                    "seeking %d partition(s) without a committed offset to their start%s",
                    len(unset),
                    " (were at "
                    + ", ".join(f"{tp.topic}[{tp.partition}]={p}" for tp, p in moved.items())
                    + ")"
                    if moved
                    else "",
                )
                if self.app.conf.consumer_auto_offset_reset == "latest":
                    await consumer.seek_to_end(*unset)
                else:
                    await consumer.seek_to_beginning(*unset)
            return committed  # type: ignore[return-value]

    class Consumer(faust_aiokafka.Consumer):
        """Delivers each stream partition's records in offset order from the committed
        offset on, whatever its fetch does; flushes what must be written before a commit.

        After a kill -9 a restarted worker's fetch was seen to hand over a raw partition's
        records from 486 while the group had committed 198, with no gap noticed by Faust
        (its "last read" offset was unset), so 198-485 were never processed and the commit
        moved past them. Here every stream partition has an expected next offset, reset to
        the committed one on each seek to committed offsets (Faust seeks there after every
        rebalance and recovery); a record beyond it first gets the records between, read
        with a consumer of their own and delivered in order. Records before it (a re-read
        after a seek back) pass through: Faust drops what it has read and the replay guard
        skips what was applied. Records that arrive while a rebalance stops the flow are not
        delivered and leave the expected offset alone, and every ``STALL_CHECK_S`` a
        partition that received nothing although its fetch saw more is refilled
        (``_check_stalled``).
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deliver = self.callback
            self.callback = self._in_order
            self._expected: dict[TP, int] = {}
            # For the stall check: _expected as the previous check saw it, and the
            # partitions it is refilling (their records wait until it is done).
            self._checked: dict[TP, int] = {}
            self._refilling: dict[TP, asyncio.Event] = {}

        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
            # Faust's drain loop hands each record over as wait_first(callback(message),
            # suspend_flow.wait()): four tasks and an asyncio.wait per record, about half of
            # Faust's per-record cost. The callback is started here, in the drain task; when
            # it returns without waiting (a stream queue had room: nearly always) no task is
            # made. Only a callback that waits (a full queue, a refill) is raced against the
            # others as before, so a rebalance still interrupts it. The drain loop is the
            # only caller in the consumer, and it ignores the result.
            first = coros[0] if coros else None
            if timeout is not None or not asyncio.iscoroutine(first) or self.should_stop:
                return await super().wait_first(*coros, timeout=timeout)
            try:
                finished, outcome = eager.start(first)
            except BaseException:
                _close(coros[1:])
                raise
            if finished:
                _close(coros[1:])
                return WaitResults([first], [outcome], False)
            return await super().wait_first(outcome, *coros[1:])

        async def seek_to_committed(self) -> Mapping[TP, int]:
            committed = await super().seek_to_committed()
            for tp, offset in committed.items():
                if not self._is_changelog_tp(tp):
                    self._expected[tp] = offset if offset is not None and offset > 0 else 0
            return committed

        async def _commit_tps(self, tps: Any, start_new_transaction: bool) -> bool:
            # A record's offset is committed only after its effects are written: the table
            # changelog (Faust flushes the producer next), and the snapshot in Redis, which
            # a replay could not restore once the offset is past it.
            for hook in before_commit or ():
                await hook()
            committed: bool = await super()._commit_tps(tps, start_new_transaction)
            return committed

        async def on_partitions_revoked(self, revoked: set[TP]) -> None:
            for tp in revoked:
                self._expected.pop(tp, None)
            await super().on_partitions_revoked(revoked)

        async def _in_order(self, message: Any) -> None:
            tp = message.tp
            refilling = self._refilling.get(tp)
            if refilling is not None:
                await refilling.wait()
            app = self.app
            if (
                not app.flow_control.is_active()
                or message.generation_id != app.consumer_generation_id
            ):
                # The stream drops what arrives while a rebalance stops the flow, and Faust
                # seeks back to the committed offsets after it: the record is not the next
                # one delivered, so the expected offset stays where it is.
                return
            expected = self._expected.get(tp)
            if expected is not None and message.offset > expected:
                await self._refill(tp, expected, message.offset)
            if expected is None or message.offset >= expected:
                self._expected[tp] = message.offset + 1
            await self._deliver(message)

        async def _refill(self, tp: TP, start: int, end: int) -> None:
            records = await read_range(settings, tp, start, end)
            logger.warning(
                "offsets %d-%d of %s[%d] were skipped by the fetch; delivering %d record(s) "
                "from them first, in order",
                start,
                end - 1,
                tp.topic,
                tp.partition,
                len(records),
            )
            metrics.records_refilled.inc(len(records))
            for record in records:
                self._expected[tp] = record.offset + 1
                await self._deliver(self._to_message(tp, record))
            # Offsets that hold no record (none in the engine's topics, but a log start
            # moved by retention) are gaps Faust may commit past.
            for first, stop in _holes([r.offset for r in records], start, end):
                await super()._add_gap(tp, first, stop - 1)

        @faust_aiokafka.Consumer.timer(STALL_CHECK_S)
        async def _check_stalled(self) -> None:
            """Deliver what a stream partition holds past its expected offset when nothing
            arrived for it since the last check although its fetch saw more.

            After a restart a partition was seen to stop for good at its committed offset
            with its records on the broker: the records fetched during start-up were
            dropped, and the fetch did not read them again. Nothing then arrives to set off
            the refill in _in_order; this check does it."""
            checked, self._checked = self._checked, dict(self._expected)
            if self.app.rebalancing or not self.app.flow_control.is_active():
                return
            stuck = stalled(self._expected, checked, self.highwater)
            if not stuck:
                return
            ends = await confirm_end_offsets(settings, {tp: self.highwater(tp) for tp in stuck})
            for tp, start in stuck.items():
                end = ends.get(tp, 0)
                if self._expected.get(tp) != start or end <= start:
                    continue
                logger.warning(
                    "%s[%d] received nothing past offset %d for %.0fs though it holds records "
                    "up to %d",
                    tp.topic,
                    tp.partition,
                    start,
                    STALL_CHECK_S,
                    end,
                )
                done = self._refilling[tp] = asyncio.Event()
                try:
                    await self._refill(tp, start, end)
                finally:
                    del self._refilling[tp]
                    done.set()

        async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
            # Faust takes a jump in a partition's offsets for compaction or transaction
            # markers and commits past it. In the engine's stream topics a jump means
            # records fetched and never delivered: _in_order delivers them, and only
            # offsets without a record become gaps.
            if self._is_changelog_tp(tp):
                await super()._add_gap(tp, offset_from, offset_to)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


def temporary_data_dir() -> str:
    """A new temporary directory for Faust's local data, removed when the process exits.

    With the memory store it holds only Faust's bookkeeping; left behind, every worker start
    would add one to the system's temporary directory.
    """
    path = tempfile.mkdtemp(prefix="intent-stream-data-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def scoring_engine(
    settings: Settings,
    *,
    fit: FitModel,
    stage_model: StageModel,
    clock: Callable[[], float] = time.time,
) -> AccountProcessor:
    """The scoring engine ``settings`` configure: intent model, alert policy, delayed labels,
    stage machine and when it decides, with ``fit`` as its fit model."""
    warning = check_alert_stages(settings, stage_model)
    if warning is not None:
        logger.warning("%s", warning)
    return AccountProcessor(
        model=IntentModel(max_blend=settings.intent_max_blend),
        policy=alert_policy(settings),
        clock=clock,
        labels=DelayedLabels(
            horizon_days=settings.intent_horizon_days,
            snapshots=settings.label_snapshots,
            features=FEATURES,
        ),
        fit=fit,
        stages=StageMachine(model=stage_model),
        decisions=settings.score_decisions,
    )


def create_app(settings: Settings, *, registry: CollectorRegistry | None = None) -> Engine:
    """The Faust app for ``settings``, with every topic, table and agent declared."""
    if settings.kafka_embedded:
        raise ValueError("resolve the embedded broker to an address before creating the app")
    # First, before anything is built: a bad stage config stops the worker with its line and
    # problem (StageConfigError) instead of half-starting it.
    stage_model = load_stage_model(settings.stage_config)
    datadir = settings.data_dir or temporary_data_dir()
    metrics = Metrics(
        registry if registry is not None else CollectorRegistry(),
        campaigns=CampaignLabels.from_setting(
            settings.marketing_campaigns, cap=settings.marketing_campaign_cap
        ),
    )
    app = faust.App(
        settings.app_id,
        # Faust's Prometheus sensor on our registry: one /metrics (agents/web.py) serves the
        # engine's and Faust's figures. setup_prometheus_sensors() is not used because it
        # would add a second /metrics route and name the metrics after the app id.
        monitor=FaustMonitor(metrics=metrics.faust),
        broker=[f"kafka://{host}" for host in settings.kafka.split(",")],
        broker_credentials=faust_broker_credentials(settings),
        store=settings.store,
        # Faust's default of one standby would have every worker replay the others' table
        # changelogs into its own store (see the setting): counted as its accounts, kept in
        # its memory, and for the memory store of no use at a take-over.
        table_standby_replicas=settings.standby_replicas,
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
        producer_max_batch_size=settings.producer_max_batch_bytes,
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
    before_commit: list[Callable[[], Awaitable[object]]] = []
    app.transport = _transport(settings, metrics, before_commit)(app.conf.broker_consumer, app)
    topics = declare(app, settings)
    roles = settings.agent_set
    # A table is declared only by the workers whose agent uses it: Faust recovers every
    # declared table's changelog at start.
    # Values are the documents' orjson bytes (intent_stream.tables): a fraction of the
    # memory of dicts, and the changelog gets them without another encoding.
    accounts = (
        json_table(app, ACCOUNT_STATE_TABLE, partitions=settings.partitions)
        if "score" in roles
        else JsonTable({})
    )
    processor = scoring_engine(
        settings,
        fit=initial_fit_model(settings) if "score" in roles else FitModel(),
        stage_model=stage_model,
    )
    pending = (
        json_table(app, PENDING_TABLE, partitions=settings.partitions)
        if "ingest" in roles
        else JsonTable({})
    )
    client = redis_client(settings)
    read_model = RedisReadModel(
        client,
        prefix=settings.redis_prefix,
        metrics=metrics,
        render=processor.render,
    )
    before_commit.append(read_model.flush)
    alerts_out = PromptProducer(settings, client_id=f"{settings.app_id}-alerts")
    before_commit.append(alerts_out.flush)
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
        alerts_out=alerts_out,
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
