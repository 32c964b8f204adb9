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

What the engine's design decides is the CPU each event costs the workers: their own CPU
time over the timed run (/proc/<pid>/stat), per event. *Efficiency* is one worker's cost per
event over two workers' (1.0: a second worker adds no work per event, and two workers
given a core each would run 2x one). The runs alternate, one worker then two,
BENCH_SCALING_RUNS times (default 2); the fastest run of each counts, as the host's speed
drifts within minutes.

Prints a table and writes benchmarks/results/scaling.json.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import (
    POLL_S,
    bench_settings,
    counter,
    cpu_seconds,
    metrics_url,
    spawn_worker,
    write_result,
)
from kafka import KafkaProducer

from intent_stream.client import route_records
from intent_stream.embedded import EmbeddedStack, free_port, stop_child
from intent_stream.simulate import SimulationConfig, simulate
from intent_stream.topics import ensure_topics

ACCOUNTS = int(os.environ.get("BENCH_SCALING_ACCOUNTS", "4000"))
RUNS = int(os.environ.get("BENCH_SCALING_RUNS", "2"))
PARTITIONS = 4
TICK = 400
TARGET = 1.7
METRIC = "intent_stream_events_processed_total"
RECORDS = "intent_stream_records_processed_total"  # records the scoring agents took


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


@dataclass(frozen=True)
class Run:
    """One timed run of a group of workers."""

    workers: int
    events_per_s: float
    machine_busy: float  # share of the machine's CPU in use
    worker_cpu_us: float  # the workers' CPU time per event, microseconds
    events_per_record: float  # of the records the scoring agents took (ingest's forwards)


def total(urls: list[str]) -> list[float]:
    return [counter(url, METRIC) for url in urls]


def run(ep, n_workers: int, recs, warm, n_events: int) -> Run:
    """Events per second of ``n_workers``, the machine's busy share and the workers' CPU
    per event meanwhile."""
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
        own0 = sum(cpu_seconds(p.pid) or 0.0 for p in procs)
        records0 = sum(counter(url, RECORDS) for url in urls)
        deadline = time.monotonic() + 900
        while (n := sum(total(urls))) < base + n_events:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise SystemExit("a worker stopped or stalled; see the logs")
            time.sleep(POLL_S)
        own = sum(cpu_seconds(p.pid) or 0.0 for p in procs) - own0
        seconds, busy = time.perf_counter() - t0, busy_share(cpu0, machine_cpu())
        records = sum(counter(url, RECORDS) for url in urls) - records0
        per_record = (n - n0) / records if records else float("nan")
        return Run(n_workers, (n - n0) / seconds, busy, own / max(n - n0, 1) * 1e6, per_record)
    finally:
        producer.close()
        for p in procs:
            stop_child(p, timeout=30)


def main() -> None:
    recs, warm, n_events = load()
    runs: list[Run] = []
    with EmbeddedStack() as ep:
        for k in range(RUNS):
            for n in (1, 2):
                print(
                    f"scaling: run {k + 1}/{RUNS}, {n} worker(s), {n_events:,} events in "
                    f"{len(recs):,} records...",
                    flush=True,
                )
                runs.append(run(ep, n, recs, warm, n_events))
    best = {
        n: max((r for r in runs if r.workers == n), key=lambda r: r.events_per_s) for n in (1, 2)
    }
    ratio = best[2].events_per_s / best[1].events_per_s
    efficiency = best[1].worker_cpu_us / best[2].worker_cpu_us
    result = {
        "events": n_events,
        "records": len(recs),
        "partitions": PARTITIONS,
        "one_worker_eps": best[1].events_per_s,
        "two_workers_eps": best[2].events_per_s,
        "ratio": ratio,
        "cpu_count": os.cpu_count(),
        "machine_busy_one_worker": best[1].machine_busy,
        "machine_busy_two_workers": best[2].machine_busy,
        "worker_cpu_us_per_event_one": best[1].worker_cpu_us,
        "worker_cpu_us_per_event_two": best[2].worker_cpu_us,
        "efficiency": efficiency,
        "runs": [asdict(r) for r in runs],
    }
    print(f"\nscaling, raw topic, ingest + score, {PARTITIONS} partitions, {n_events:,} events")
    print(
        f"{'run':<5} {'workers':>7} {'events/s':>10} {'machine busy':>13} "
        f"{'worker CPU us/event':>20} {'events/record':>14}"
    )
    for k, r in enumerate(runs):
        print(
            f"{k // 2 + 1:<5} {r.workers:>7} {r.events_per_s:>10,.0f} {r.machine_busy:>13.0%} "
            f"{r.worker_cpu_us:>20.1f} {r.events_per_record:>14,.0f}"
        )
    print(
        f"ratio of the fastest runs: {ratio:.2f} (target >= {TARGET}); efficiency {efficiency:.2f}"
    )
    write_result("scaling", result)
    status = "ok" if ratio >= TARGET else "MISS"
    print(
        f"SUMMARY scaling: 1 worker {best[1].events_per_s:,.0f} ev/s, 2 workers "
        f"{best[2].events_per_s:,.0f} ev/s, ratio {ratio:.2f}; machine CPU busy "
        f"{best[1].machine_busy:.0%} / {best[2].machine_busy:.0%}; worker CPU "
        f"{best[1].worker_cpu_us:.0f} / {best[2].worker_cpu_us:.0f} us/event (efficiency "
        f"{efficiency:.2f}), fastest of {RUNS} [{status}]"
    )


if __name__ == "__main__":
    main()
