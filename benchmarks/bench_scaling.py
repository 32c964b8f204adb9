"""One worker against two workers on the same topic: the scaling ratio.

The full path: the raw topic (4 partitions), routed by visitor as the collector writes it,
through workers running both agents (ingest + scoring) in one consumer group (same app id).
For each run, on topics of its own: start the worker(s) on empty topics, send a warm-up
record to every partition and wait until every worker has processed events (the group has
settled and each worker holds partitions), then publish BENCH_SCALING_ACCOUNTS' simulated
journeys and time the group from its first processed event to the last, summing the workers'
``intent_stream_events_processed_total``. The machine has two cores, so two workers plus the
broker, Redis and the producer compete for them: the share of the machine's CPU in use
during each timed run (/proc/stat) is printed beside it, since a ratio below 2 with the
machine near 100% busy says the cores ran out, not the engine.

Prints a table and writes benchmarks/results/scaling.json.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness import POLL_S, bench_settings, counter, metrics_url, spawn_worker, write_result
from kafka import KafkaProducer

from intent_stream.client import route_records
from intent_stream.embedded import EmbeddedStack, free_port, stop_child
from intent_stream.simulate import SimulationConfig, simulate
from intent_stream.topics import ensure_topics

ACCOUNTS = int(os.environ.get("BENCH_SCALING_ACCOUNTS", "4000"))
PARTITIONS = 4
TICK = 400
TARGET = 1.7
METRIC = "intent_stream_events_processed_total"


def load() -> tuple[list[tuple[int, bytes, bytes]], list[tuple[int, bytes, bytes]], int]:
    events = list(simulate(SimulationConfig(accounts=ACCOUNTS, days=90, seed=17)))
    out = []
    for start in range(0, len(events), TICK):
        for r in route_records(events[start : start + TICK], partitions=PARTITIONS):
            out.append((r.partition, r.key, r.value))
    # Warm-up: one event of a visitor per partition, from another seed's accounts.
    warm_events = list(simulate(SimulationConfig(accounts=40, days=5, seed=99)))
    warm = []
    for p in range(PARTITIONS):
        for r in route_records(warm_events, partitions=PARTITIONS):
            if r.partition == p:
                warm.append((r.partition, r.key, r.value))
    return out, warm, len(events)


def machine_cpu() -> tuple[int, int]:
    """(busy, all) CPU jiffies of the whole machine so far, from /proc/stat (Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of the machine's CPU capacity in use between two machine_cpu() readings."""
    spent = after[1] - before[1]
    return (after[0] - before[0]) / spent if spent > 0 else float("nan")


def total(urls: list[str]) -> list[float]:
    return [counter(url, METRIC) for url in urls]


def run(ep, n_workers: int, recs, warm, n_events: int) -> tuple[float, float]:
    """Events per second of ``n_workers`` and the machine's busy share meanwhile."""
    settings = bench_settings(ep, "bench-scale", partitions=PARTITIONS, session_timeout=6.0)
    ensure_topics(settings)
    procs, urls = [], []
    for i in range(n_workers):
        mine = settings.replace(web_port=free_port())
        procs.append(spawn_worker(mine, f"{settings.app_id}-{i}"))
        urls.append(metrics_url(mine))
    producer = KafkaProducer(
        bootstrap_servers=ep.kafka_bootstrap, linger_ms=20, batch_size=1 << 20,
        max_request_size=8 << 20,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        # Warm-up until every worker has processed something: the group is settled.
        while not all(n > 0 for n in total(urls)):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise SystemExit("a worker did not start or got no partitions; see the logs")
            for partition, key, value in warm:
                producer.send(settings.raw_topic, key=key, value=value, partition=partition)
            producer.flush()
            time.sleep(1.0)
        time.sleep(1.0)
        base = sum(total(urls))
        for partition, key, value in recs:
            producer.send(settings.raw_topic, key=key, value=value, partition=partition)
        producer.flush()
        while (n := sum(total(urls))) <= base:
            time.sleep(0.02)
        t0, n0, cpu0 = time.perf_counter(), n, machine_cpu()
        deadline = time.monotonic() + 900
        while (n := sum(total(urls))) < base + n_events:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise SystemExit("a worker stopped or stalled; see the logs")
            time.sleep(POLL_S)
        return (n - n0) / (time.perf_counter() - t0), busy_share(cpu0, machine_cpu())
    finally:
        producer.close()
        for p in procs:
            stop_child(p, timeout=30)


def main() -> None:
    recs, warm, n_events = load()
    rates, busy = {}, {}
    with EmbeddedStack() as ep:
        for n in (1, 2):
            print(f"scaling: {n} worker(s), {n_events:,} events in {len(recs):,} records...",
                  flush=True)  # fmt: skip
            rates[n], busy[n] = run(ep, n, recs, warm, n_events)
    ratio = rates[2] / rates[1]
    result = {
        "events": n_events,
        "records": len(recs),
        "partitions": PARTITIONS,
        "one_worker_eps": rates[1],
        "two_workers_eps": rates[2],
        "ratio": ratio,
        "cpu_count": os.cpu_count(),
        "machine_busy_one_worker": busy[1],
        "machine_busy_two_workers": busy[2],
    }
    print(f"\nscaling, raw topic, ingest + score, {PARTITIONS} partitions, {n_events:,} events")
    print(f"{'workers':<10} {'events/s':>10} {'machine CPU busy':>17}")
    print(f"{'1':<10} {rates[1]:>10,.0f} {busy[1]:>17.0%}")
    print(f"{'2':<10} {rates[2]:>10,.0f} {busy[2]:>17.0%}")
    print(f"{'ratio':<10} {ratio:>10.2f}  (target >= {TARGET})")
    write_result("scaling", result)
    status = "ok" if ratio >= TARGET else "MISS"
    print(
        f"SUMMARY scaling: 1 worker {rates[1]:,.0f} ev/s, 2 workers {rates[2]:,.0f} ev/s, "
        f"ratio {ratio:.2f}; machine CPU busy {busy[1]:.0%} / {busy[2]:.0%} [{status}]"
    )


if __name__ == "__main__":
    main()
