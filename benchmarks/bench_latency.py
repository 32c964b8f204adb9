"""Event -> alert latency, p50 / p99, at a fixed input rate (default 2,000 events/s).

One worker running both agents (ingest, scoring) on the embedded broker. A producer publishes
to the raw topic at BENCH_RATE events/s for BENCH_SECONDS seconds, as a tracker would (every
100 ms, one record per visitor partition): simulated journeys as background load, with *hot
journeys* interleaved, a few per second: each a new account whose buying committee views
pricing, downloads content and asks for a demo, one event every 100 ms, stamped with the
current time. The alert's ``events`` field says how many of its account's events the worker
had applied when it fired, so it names the event that triggered it; latency is from the
moment that event was handed to the producer to the moment the alert is read back from the
alerts topic by a plain consumer (in this process, so both ends use one clock).

Prints a table and writes benchmarks/results/latency.json.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import orjson
from harness import EVENTS_METRIC, bench_settings, counter, metrics_url, spawn_worker, write_result
from kafka import KafkaConsumer, KafkaProducer

from intent_stream.client import route_records, utc_iso
from intent_stream.embedded import EmbeddedStack, stop_child
from intent_stream.simulate import SimulationConfig, simulate
from intent_stream.topics import ensure_topics

RATE = float(os.environ.get("BENCH_RATE", "2000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
HOT_PER_S = float(os.environ.get("BENCH_HOT_PER_S", "4"))
PARTITIONS = 4
TICK = 0.1  # a tracker flush every 100 ms, one record per visitor partition (as the demo)
HOT_STEP = 0.1  # seconds between two events of a hot journey
TARGET_P99_MS = 250.0


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


class AlertReader(threading.Thread):
    """Reads the alerts topic and notes when each hot account's first alert arrived."""

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
        self.seen: dict[str, tuple[float, int]] = {}
        self.alerts = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for record in self.consumer:
                now = time.time()
                alert = orjson.loads(record.value)
                self.alerts += 1
                if alert["account_id"].startswith("hot-"):
                    self.seen.setdefault(alert["account_id"], (now, int(alert["events"])))
                if self.stop.is_set():
                    break
        self.consumer.close()


def main() -> None:
    background = iter(simulate(SimulationConfig(accounts=3000, days=90, seed=13)))
    with EmbeddedStack() as ep:
        settings = bench_settings(ep, "bench-lat", partitions=PARTITIONS, session_timeout=6.0)
        ensure_topics(settings)
        proc = spawn_worker(settings)
        url = metrics_url(settings)
        producer = KafkaProducer(bootstrap_servers=ep.kafka_bootstrap, linger_ms=0, acks=1)
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
            # Let the last journeys' alerts arrive.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(reader.seen) < hot_n * 0.95:
                time.sleep(0.2)
            time.sleep(1.0)
        finally:
            reader.stop.set()
            reader.join(timeout=5)
            producer.close()
            stop_child(proc, timeout=30)
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
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
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
        "p99_ms": p99,
        "max_ms": latencies[-1],
    }
    print(f"\nevent -> alert latency at {result['rate_achieved_eps']:,.0f} events/s (raw topic, "
          "ingest + score, one worker)")  # fmt: skip
    print(f"{'measure':<34} {'value':>10}")
    for name, key in (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99 (target <= 250 ms)", "p99_ms"),
                      ("max", "max_ms")):  # fmt: skip
        print(f"{name:<34} {result[key]:>7,.0f} ms")
    print(f"{'hot journeys / alerts measured':<34} {hot_n:>5} / {len(latencies)}")
    print(f"{'worker processed during the run':<34} {worker_eps:>7,.0f} events/s")
    write_result("latency", result)
    status = "ok" if p99 <= TARGET_P99_MS else "MISS"
    print(
        f"SUMMARY latency: p50 {p50:,.0f} ms, p99 {p99:,.0f} ms at "
        f"{result['rate_achieved_eps']:,.0f} events/s in, worker kept {worker_eps:,.0f}/s "
        f"({len(latencies)} alerts) [{status}]"
    )


if __name__ == "__main__":
    main()
