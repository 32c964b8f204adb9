"""Throughput of the ingest agent (validate, normalise, de-duplicate, resolve, route), end to end.

Preloads the raw topic with seeded simulated journeys routed as the collector and the client
write them (one Segment batch per visitor partition per BENCH_TICK events), half the anonymous
visitors without an account (identity resolution and the pending-visitor table at work), then
measures in the same run:

- raw ceiling: a plain aiokafka consumer reading and JSON-decoding every record of the raw topic;
- ingest: a worker running only the ingest agent (``agents=ingest``), timed from its first
  routed message to the last (start-up and group join excluded);
- scoring: then a worker running only the scoring agent (its own app id) on the records the
  ingest worker forwarded, as a deployment that splits the stages does.

A worker running both agents shares one process (and core) between them. Prints a table and
writes benchmarks/results/ingest.json.
"""

from __future__ import annotations

import asyncio
import os
import time

from bench_pipeline import raw_ceiling
from harness import (
    POLL_S,
    bench_settings,
    counter,
    metrics_url,
    preload,
    spawn_worker,
    write_result,
)

from intent_stream.client import route_records
from intent_stream.embedded import EmbeddedStack, free_port, stop_child
from intent_stream.settings import Settings
from intent_stream.simulate import SimulationConfig, simulate
from intent_stream.topics import ensure_topics

ACCOUNTS = int(os.environ.get("BENCH_ACCOUNTS", "1500"))
# Events per tracker flush; one record per partition each, as the collector writes one HTTP
# batch (segment-analytics-python flushes at 100 messages; 400 over 4 partitions ~ 100).
TICK = int(os.environ.get("BENCH_TICK", "400"))
PARTITIONS = 4


def raw_records() -> tuple[list[tuple[int, bytes, bytes]], int]:
    config = SimulationConfig(accounts=ACCOUNTS, days=90, seed=11, reveal_share=0.5)
    events = list(simulate(config))
    out: list[tuple[int, bytes, bytes]] = []
    for start in range(0, len(events), TICK):
        for record in route_records(events[start : start + TICK], partitions=PARTITIONS):
            out.append((record.partition, record.key, record.value))
    return out, len(events)


def run_worker(settings: Settings, metric: str, *, total: float | None) -> float:
    """Events per second a worker counts in ``metric``, from its first to its last.

    Until ``total`` when given; else until the count has not moved for 2 s (events waiting for
    identification are never applied, so the scoring stage has no known total).
    """
    proc = spawn_worker(settings)
    url = metrics_url(settings)
    try:
        deadline = time.monotonic() + 900
        while (n0 := counter(url, metric)) <= 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker did not start; see its log")
            time.sleep(0.05)
        t0 = last_report = time.perf_counter()
        n, quiet_since = n0, time.perf_counter()
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker stalled; see its log")
            time.sleep(POLL_S)
            now = counter(url, metric)
            if now != n:
                n, quiet_since = now, time.perf_counter()
            if total is not None and n >= total:
                return (n - n0) / (time.perf_counter() - t0)
            if total is None and time.perf_counter() - quiet_since > 2.0:
                return (n - n0) / (quiet_since - t0)
            if time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                print(f"  {metric}: {n:,.0f}", flush=True)
    finally:
        stop_child(proc)


def main() -> None:
    with EmbeddedStack() as ep:
        settings = bench_settings(
            ep,
            "bench",
            partitions=PARTITIONS,
            producer_linger_ms=int(os.environ.get("BENCH_LINGER_MS", "10")),
        )
        ensure_topics(settings)
        recs, total = raw_records()
        print(f"preloading {total:,} events in {len(recs):,} raw records...", flush=True)
        preload(ep.kafka_bootstrap, settings.raw_topic, recs)
        ceiling = asyncio.run(raw_ceiling(ep.kafka_bootstrap, settings.raw_topic, len(recs)))
        print("ingest-only worker...", flush=True)
        ingest = run_worker(
            settings.replace(agents="ingest"),
            "intent_stream_ingest_messages_total",
            total=total,
        )
        print("scoring-only worker on what the ingest worker forwarded...", flush=True)
        scorer = settings.replace(
            agents="score", app_id=f"{settings.app_id}-score", web_port=free_port()
        )
        score = run_worker(
            scorer,
            "intent_stream_events_processed_total",
            total=None,
        )
    result = {
        "events": total,
        "raw_records": len(recs),
        "raw_ceiling_eps": ceiling,
        "ingest_eps": ingest,
        "score_eps": score,
    }
    print(f"\n{'measure':<34} {'value':>12}")
    print(f"{'events (raw records)':<34} {total:>12,} ({len(recs):,})")
    print(f"{'raw ceiling (aiokafka + orjson)':<34} {ceiling:>12,.0f} events/s")
    print(f"{'ingest: validated and routed':<34} {result['ingest_eps']:>12,.0f} events/s")
    print(f"{'  ratio to the raw ceiling':<34} {result['ingest_eps'] / ceiling:>12.3f}")
    print(f"{'scoring the forwarded events':<34} {score:>12,.0f} events/s")
    write_result("ingest", result)
    print(
        f"SUMMARY ingest: ingest-only {result['ingest_eps']:,.0f} ev/s "
        f"({result['ingest_eps'] / ceiling:.3f}x raw {ceiling:,.0f}), "
        f"score-only {score:,.0f} ev/s"
    )


if __name__ == "__main__":
    main()
