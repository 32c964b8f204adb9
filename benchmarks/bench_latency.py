"""Event -> alert latency, p50 / p99, at a fixed input rate (default 2,000 events/s).

One worker running both agents (ingest, scoring) on the embedded broker. A producer publishes
to the raw topic at BENCH_RATE events/s for BENCH_SECONDS seconds, as a tracker would (every
100 ms, one record per visitor partition): simulated journeys as background load, with *hot
journeys* interleaved, BENCH_HOT_PER_S (default 10) a second, part of the rate: each a new
account whose buying committee views pricing, downloads content and asks for a demo, one
event every 100 ms, stamped with the current time. Each journey's first alert is one
sample: ~190 in a default run, so one slow alert does not set the p99. The alert's
``events`` field says how many of its account's events the worker had applied when it
fired, so it names the event that triggered it; latency is from the moment that event was
handed to the producer to the moment the alert is read back from the alerts topic by a
plain consumer (in this process, so both ends use one clock).

Raw ceiling, in the same run on the same broker, after the worker has stopped: the latency of
the same three topics with no work between them. The benchmark's producer publishes small
JSON messages carrying their send time to a raw topic at BENCH_RATE messages/s (in bursts
every 100 ms, as above) for BENCH_CEILING_SECONDS (default 10) seconds; two plain relays, each
an aiokafka consumer with the worker's ``fetch_max_wait_ms`` and a producer without
linger, pass them on to an events topic and from there to an alerts topic, where the same
kind of consumer reads them back: raw -> (ingest) -> events -> (score) -> alerts with
nothing in the brackets. They send as the worker's forwards and alerts go: the first what
it fetched for a partition as one closed producer batch, the second record by record. The
relays run in a child process of their own, as the worker does. The pipeline's p99 is also
given as a ratio to the chain's p99.

The background events are generated before the run: generating them during it would take
the GIL from the thread that reads the alerts back.

Prints a table and writes benchmarks/results/latency.json.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import statistics
import threading
import time
import uuid
from typing import Any

import orjson
from harness import EVENTS_METRIC, bench_settings, counter, metrics_url, spawn_worker, write_result
from kafka import KafkaConsumer, KafkaProducer

from intent_stream.client import route_records, utc_iso
from intent_stream.embedded import EmbeddedStack, stop_child
from intent_stream.settings import Settings
from intent_stream.simulate import SimulationConfig, simulate
from intent_stream.topics import ensure_topics

RATE = float(os.environ.get("BENCH_RATE", "2000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
HOT_PER_S = float(os.environ.get("BENCH_HOT_PER_S", "10"))
PARTITIONS = 4
TICK = 0.1  # a tracker flush every 100 ms, one record per visitor partition (as the demo)
HOT_STEP = 0.1  # seconds between two events of a hot journey
QUIET_S = 5.0  # after the run: no new hot alert for this long ends the wait for more
TARGET_P99_MS = 250.0
#: Seconds of the raw ceiling's measurement: half the pipeline's by default, since a chain
#: with no work settles at once, and ``make bench`` should stay under 10 minutes.
CEILING_SECONDS = float(os.environ.get("BENCH_CEILING_SECONDS", "10"))


def hot_journey(account: str, n: int) -> list[dict]:
    """A buying committee of three, from first visit to demo request (alerts on the way)."""
    people = [f"{account}-p{i}" for i in range(3)]
    roles = ["engineering", "finance", "executive"]
    steps: list[dict] = []
    for person, role in zip(people, roles, strict=True):
        steps.append({"type": "identify", "userId": person,
                      "traits": {"email": f"{person}@{account}", "role": role}})  # fmt: skip
    for person in people:
        steps.append({"type": "page", "userId": person, "properties": {"path": "/pricing"}})
        steps.append({"type": "track", "userId": person, "event": "Whitepaper Downloaded"})
        steps.append({"type": "page", "userId": person, "properties": {"path": "/compare/x"}})
    steps.append({"type": "track", "userId": people[0], "event": "Demo Requested"})
    steps.append({"type": "track", "userId": people[1], "event": "Pricing Viewed"})
    steps.append({"type": "track", "userId": people[2], "event": "Trial Started"})
    for i, step in enumerate(steps):
        step["messageId"] = f"hot-{n}-{i}"
        step["context"] = {"groupId": account}
    return steps


def tracker_producer(bootstrap: str) -> KafkaProducer:
    """The producer that publishes to the raw topic, as a tracker would. Both measurements
    publish with it, so the ceiling's first hop costs what the pipeline's does."""
    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)


def p99(ordered: list[float]) -> float:
    """The 99th percentile of ``ordered`` (sorted), the sample nearest to it."""
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


class TopicReader(threading.Thread):
    """Reads a topic from its start and hands each record to ``handle`` with the time it
    arrived. Both measurements read back with it, so they end alike."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=5,
            consumer_timeout_ms=100,
        )
        self.stop = threading.Event()

    def handle(self, record: Any, now: float) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stop.is_set():
            for record in self.consumer:
                self.handle(record, time.time())
                if self.stop.is_set():
                    break
        self.consumer.close()


class AlertReader(TopicReader):
    """Reads the alerts topic and notes when each hot account's first alert arrived."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.seen: dict[str, tuple[float, int]] = {}
        self.alerts = 0

    def handle(self, record: Any, now: float) -> None:
        alert = orjson.loads(record.value)
        self.alerts += 1
        if alert["account_id"].startswith("hot-"):
            self.seen.setdefault(alert["account_id"], (now, int(alert["events"])))


class ChainReader(TopicReader):
    """Reads the raw chain's last topic: each message's latency from the send time it carries;
    warm-up messages only say which partitions the chain already relays."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.latencies_ms: list[float] = []
        self.warm: set[int] = set()

    def handle(self, record: Any, now: float) -> None:
        message = orjson.loads(record.value)
        if message.get("warm"):
            self.warm.add(record.partition)
        else:
            self.latencies_ms.append((now - message["t"]) * 1000)


async def relay(
    bootstrap: str,
    source: str,
    sink: str,
    worker: dict[str, int],
    stop: Any,
    until: float,
    *,
    forwards: bool,
) -> None:
    """Copy every record of ``source`` to the same partition of ``sink``, doing nothing else,
    with the worker's fetch wait and no linger, until ``stop`` is set or ``until`` passes,
    sending as the worker does: with ``forwards``, what a fetch brought for a partition goes
    out as one closed producer batch, as the ingest agent's forwards
    (``sinks.produce_now``); else record by record, as the alerts
    (``sinks.PromptProducer``)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    # No group: a join costs seconds on the embedded broker, and one reader needs none.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=worker["fetch_max_wait_ms"],
    )
    # As the worker's producers: acks (all) and batch size; no linger, as for its forwards
    # (closed batches never linger) and its alerts.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=0,
        max_batch_size=worker["producer_max_batch_bytes"],
    )
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(source, p) for p in range(PARTITIONS)])
        while not stop.is_set() and time.monotonic() < until:
            batch = await consumer.getmany(timeout_ms=100)
            for tp, messages in batch.items():
                if not forwards:
                    for m in messages:
                        # send() waits to enqueue, not for the broker's ack (as the worker's).
                        await producer.send(sink, m.value, key=m.key, partition=tp.partition)
                    continue
                out = producer.create_batch()
                for m in messages:
                    if out.append(key=m.key, value=m.value, timestamp=None) is None:
                        out.close()
                        await producer.send_batch(out, sink, partition=tp.partition)
                        out = producer.create_batch()
                        out.append(key=m.key, value=m.value, timestamp=None)
                # send_batch waits to enqueue, not for the broker's ack (as the worker's).
                out.close()
                await producer.send_batch(out, sink, partition=tp.partition)
    finally:
        await producer.stop()
        await consumer.stop()


def run_relays(
    bootstrap: str, topics: list[str], worker: dict[str, int], stop: Any, seconds: float
) -> None:
    """The child process of the raw chain: topics[0] -> topics[1] -> topics[2], two relays on
    one event loop (as the worker's two agents), for at most ``seconds``."""

    async def both() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(
            relay(bootstrap, topics[0], topics[1], worker, stop, until, forwards=True),
            relay(bootstrap, topics[1], topics[2], worker, stop, until, forwards=False),
        )

    asyncio.run(both())


def raw_chain(bootstrap: str, settings: Settings) -> dict[str, float]:
    """The raw ceiling: end-to-end latency of raw -> relay -> events -> relay -> alerts with
    no work on the way, at RATE messages/s for CEILING_SECONDS (see the module's docstring)."""
    tag = uuid.uuid4().hex[:6]
    chain = settings.replace(
        raw_topic=f"bench.{tag}.chain-raw",
        events_topic=f"bench.{tag}.chain-events",
        alerts_topic=f"bench.{tag}.chain-alerts",
    )
    ensure_topics(chain)  # the pipeline's other topics exist already
    topics = [chain.raw_topic, chain.events_topic, chain.alerts_topic]
    worker = {
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "producer_max_batch_bytes": settings.producer_max_batch_bytes,
    }
    # A process of its own, as the worker is: in this one the relays would share the GIL
    # with the producer and the reader, and waiting for it would count as latency.
    # Spawned, not forked: this process already runs kafka-python's threads.
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    child = context.Process(
        target=run_relays,
        args=(bootstrap, topics, worker, stop, CEILING_SECONDS + 120),
        daemon=True,
    )
    child.start()
    reader = ChainReader(bootstrap, topics[-1])
    reader.start()
    producer = tracker_producer(bootstrap)
    try:
        # Warm-up: a message per partition every 100 ms until each partition came through
        # both relays (they have started and fetch from all of it).
        deadline = time.monotonic() + 60
        while len(reader.warm) < PARTITIONS:
            if not child.is_alive() or time.monotonic() > deadline:
                raise SystemExit("the raw chain's relays did not start")
            for p in range(PARTITIONS):
                producer.send(topics[0], value=orjson.dumps({"warm": True}), partition=p)
            producer.flush()
            time.sleep(TICK)
        print(
            f"latency: raw ceiling, 2 plain relays, {RATE:,.0f} messages/s for "
            f"{CEILING_SECONDS:.0f}s...",
            flush=True,
        )
        # The same schedule as the pipeline's: a burst every TICK; each message stamped as
        # it is handed to the producer.
        per_tick = max(1, round(RATE * TICK))
        sent = tick = 0
        start = time.monotonic()
        while time.monotonic() - start < CEILING_SECONDS:
            for _ in range(per_tick):
                value = orjson.dumps({"t": time.time(), "n": sent})
                producer.send(topics[0], value=value, partition=sent % PARTITIONS)
                sent += 1
            tick += 1
            pause = start + tick * TICK - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        elapsed = time.monotonic() - start
        producer.flush()
        deadline = time.monotonic() + 10
        while len(reader.latencies_ms) < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        if not child.is_alive():
            raise SystemExit("the raw chain's relays stopped early; see the traceback above")
    finally:
        reader.stop.set()
        reader.join(timeout=5)
        producer.close()
        stop.set()
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()
            child.join(timeout=5)
    latencies = sorted(reader.latencies_ms)
    if not latencies:
        raise SystemExit("no message came through the raw chain")
    return {
        "raw_ceiling_seconds": elapsed,
        "raw_ceiling_rate_eps": sent / elapsed,
        "raw_ceiling_messages_sent": sent,
        "raw_ceiling_messages_read": len(latencies),
        "raw_ceiling_fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "raw_ceiling_p50_ms": statistics.median(latencies),
        "raw_ceiling_p99_ms": p99(latencies),
        "raw_ceiling_max_ms": latencies[-1],
    }


def main() -> None:
    # Generated before the run: the tracker is another machine, and generating during the
    # run would take the GIL from the thread that reads the alerts back (its wait would
    # count as latency). A warm-up longer than the spare lets the generator go on.
    journeys = simulate(SimulationConfig(accounts=3000, days=90, seed=13))
    spare = round(RATE * SECONDS) + 20_000
    background = itertools.chain(list(itertools.islice(journeys, spare)), journeys)
    with EmbeddedStack() as ep:
        settings = bench_settings(ep, "bench-lat", partitions=PARTITIONS, session_timeout=6.0)
        ensure_topics(settings)
        proc = spawn_worker(settings)
        url = metrics_url(settings)
        producer = tracker_producer(ep.kafka_bootstrap)
        reader = AlertReader(ep.kafka_bootstrap, settings.alerts_topic)
        reader.start()
        sent_at: dict[tuple[str, int], float] = {}  # (account, event number) -> send time
        try:
            # Warm-up: background events until the worker has processed some (group joined).
            deadline = time.monotonic() + 180
            while counter(url, EVENTS_METRIC) <= 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the worker did not start; see its log")
                for r in route_records([next(background) for _ in range(20)], partitions=4):
                    producer.send(
                        settings.raw_topic, key=r.key, value=r.value, partition=r.partition
                    )
                producer.flush()
                time.sleep(0.2)
            print(
                f"latency: worker ready; {RATE:,.0f} events/s for {SECONDS:.0f}s with "
                f"{HOT_PER_S:g} hot journeys/s...",
                flush=True,
            )
            processed0 = counter(url, EVENTS_METRIC)
            active: list[tuple[str, list[dict], float]] = []  # account, steps left, next due
            hot_n, sent = 0, 0
            start = time.monotonic()
            next_hot = start
            per_tick = max(1, round(RATE * TICK))
            tick = 0
            while (now := time.monotonic()) - start < SECONDS:
                if now >= next_hot:
                    account = f"hot-{settings.app_id}-{hot_n}.example"
                    active.append((account, hot_journey(account, hot_n), now))
                    hot_n += 1
                    next_hot += 1.0 / HOT_PER_S
                batch: list[dict] = []
                hot_sent: list[tuple[str, int]] = []
                still = []
                for account, steps, due in active:
                    if now >= due and steps:
                        step = steps.pop(0)
                        step["timestamp"] = utc_iso(time.time())
                        batch.append(step)
                        number = len(hot_journey(account, 0)) - len(steps)
                        hot_sent.append((account, number))
                        due = now + HOT_STEP
                    if steps:
                        still.append((account, steps, due))
                active = still
                while len(batch) < per_tick:
                    batch.append(next(background))
                t_send = time.time()
                for r in route_records(batch, partitions=PARTITIONS):
                    producer.send(
                        settings.raw_topic, key=r.key, value=r.value, partition=r.partition
                    )
                for key in hot_sent:
                    sent_at[key] = t_send
                sent += len(batch)
                tick += 1
                pause = start + tick * TICK - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            elapsed = time.monotonic() - start
            processed = counter(url, EVENTS_METRIC)
            worker_eps = (processed - processed0) / elapsed
            producer.flush()
            # Let the last journeys' alerts arrive: until every hot journey has alerted, or
            # none has for QUIET_S (a few journeys end below the threshold; the rest alert
            # within a second of their last event), or 30 s in all.
            deadline = time.monotonic() + 30
            seen, quiet_until = len(reader.seen), time.monotonic() + QUIET_S
            while len(reader.seen) < hot_n and time.monotonic() < min(deadline, quiet_until):
                time.sleep(0.2)
                if len(reader.seen) != seen:
                    seen, quiet_until = len(reader.seen), time.monotonic() + QUIET_S
        finally:
            reader.stop.set()
            reader.join(timeout=5)
            producer.close()
            stop_child(proc, timeout=30)
        # After the worker has stopped, so that neither measurement shares the cores with
        # the other's processes.
        ceiling = raw_chain(ep.kafka_bootstrap, settings)
    latencies = []
    missing = 0
    for account, (arrived, number) in reader.seen.items():
        t_send = sent_at.get((account, number))
        if t_send is None:
            missing += 1
            continue
        latencies.append((arrived - t_send) * 1000)
    latencies.sort()
    if not latencies:
        raise SystemExit("no hot journey raised an alert; see the worker's log")
    p50 = statistics.median(latencies)
    p99_ms = p99(latencies)
    result = {
        "rate_target_eps": RATE,
        "rate_achieved_eps": sent / elapsed,
        "seconds": elapsed,
        "worker_processed_eps_during_run": worker_eps,
        "hot_journeys": hot_n,
        "alerts_measured": len(latencies),
        "alerts_unattributed": missing,
        "alerts_total": reader.alerts,
        "p50_ms": p50,
        "p90_ms": latencies[int(0.9 * (len(latencies) - 1))],
        "p99_ms": p99_ms,
        "max_ms": latencies[-1],
        **ceiling,
        "p99_ratio_to_raw_ceiling": p99_ms / ceiling["raw_ceiling_p99_ms"],
    }
    print(f"\nevent -> alert latency at {result['rate_achieved_eps']:,.0f} events/s (raw topic, "
          "ingest + score, one worker)")  # fmt: skip
    print(f"{'measure':<34} {'value':>10}")
    for name, key in (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99 (target <= 250 ms)", "p99_ms"),
                      ("max", "max_ms")):  # fmt: skip
        print(f"{name:<34} {result[key]:>7,.0f} ms")
    print(f"{'hot journeys / alerts measured':<34} {hot_n:>5} / {len(latencies)}")
    print(f"{'worker processed during the run':<34} {worker_eps:>7,.0f} events/s")
    for name, key in (("raw ceiling: 2 plain relays, p50", "raw_ceiling_p50_ms"),
                      ("raw ceiling: 2 plain relays, p99", "raw_ceiling_p99_ms"),
                      ("raw ceiling: 2 plain relays, max", "raw_ceiling_max_ms")):  # fmt: skip
        print(f"{name:<34} {result[key]:>7,.0f} ms")
    print(
        f"{'raw ceiling: messages sent / read':<34} {ceiling['raw_ceiling_messages_sent']:,.0f}"
        f" / {ceiling['raw_ceiling_messages_read']:,.0f} at "
        f"{ceiling['raw_ceiling_rate_eps']:,.0f}/s for {ceiling['raw_ceiling_seconds']:.0f}s"
    )
    ratio = result["p99_ratio_to_raw_ceiling"]
    print(f"{'p99 / raw ceiling p99':<34} {ratio:>8.2f}x")
    write_result("latency", result)
    status = "ok" if p99_ms <= TARGET_P99_MS else "MISS"
    print(
        f"SUMMARY latency: p50 {p50:,.0f} ms, p99 {p99_ms:,.0f} ms at "
        f"{result['rate_achieved_eps']:,.0f} events/s in, worker kept {worker_eps:,.0f}/s "
        f"({len(latencies)} alerts), p99 {ratio:.2f}x raw 2-relay chain "
        f"({ceiling['raw_ceiling_p99_ms']:,.0f} ms) [{status}]"
    )


if __name__ == "__main__":
    main()
