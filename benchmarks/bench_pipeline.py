"""End-to-end throughput of one worker, against the raw ceiling on the same broker.

Loads a topic with simulated journeys (seeded), then measures in the same run:
- raw ceiling: a plain aiokafka consumer reading and JSON-decoding every record;
- the worker: decode, validate, state, features, score, alert policy, Redis read model,
  timed from its first processed event to the last (start-up and group join excluded).
Four layouts:
- batched records on the account topic, one record per destination partition per tracker
  flush of TICK events (~100 events a record: what the ingest agent forwards for a single
  raw record, or when records trickle in), scoring agent only;
- one event per record on the account topic (what kcat or a third-party producer writes
  there), scoring agent only, beside a plain Faust counting agent on the same topic
  (faust_count.py): the issue's yardstick for one event per record is >= 0.8x that agent;
- batched records on the raw topic, routed by visitor as the collector and the client write
  them, through one worker running both agents (ingest: validate, normalise, de-duplicate in
  Redis, resolve identity, gather and forward; then scoring): the full path;
- one event per record on the raw topic, keyed by visitor (what kcat or a third-party
  producer writes there), the full path, beside the counting agent on that topic.
On the account topic a second worker (a group of its own) then reads the same records with
``score_decisions=batch``: each account scored and decided on once per batch of records
instead of once per record (the default).
Sizes: BENCH_ACCOUNTS (default 2000 accounts, 90 days); the one-event-per-record layouts
use the first BENCH_ONE_EVENTS (15,000) of those events, and the counting agent reads them
BENCH_COUNT_RUNS times (default 2; the fastest counts). BENCH_LAYOUTS picks layouts by
their short names (default "batched,one,raw,one-raw"). Prints a table and writes
benchmarks/results/pipeline.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import orjson
from harness import (
    EVENTS_METRIC,
    POLL_S,
    bench_settings,
    counters,
    cpu_seconds,
    metrics_url,
    preload,
    spawn_worker,
    write_result,
)

from intent_stream.client import route_records, visitor_key
from intent_stream.embedded import EmbeddedStack, spawn_child, stop_child
from intent_stream.settings import Settings
from intent_stream.simulate import SimulationConfig, simulate
from intent_stream.topics import ensure_topics, partition_for

ACCOUNTS = int(os.environ.get("BENCH_ACCOUNTS", "2000"))
ONE_EVENTS = int(os.environ.get("BENCH_ONE_EVENTS", "15000"))
CHOSEN = os.environ.get("BENCH_LAYOUTS", "batched,one,raw,one-raw").split(",")
COUNT_RUNS = int(os.environ.get("BENCH_COUNT_RUNS", "2"))
TICK = 400  # events per tracker flush on the raw topic (as in bench_ingest.py)
PARTITIONS = 4


_EVENTS: list[dict] = []


def sim_events() -> list[dict]:
    if not _EVENTS:
        _EVENTS.extend(simulate(SimulationConfig(accounts=ACCOUNTS, days=90, seed=11)))
    return _EVENTS


def records(layout: str) -> tuple[list[tuple[int | None, bytes, bytes]], int]:
    """The records of ``layout`` as (partition or None for the key's, key, value)."""
    events = sim_events()
    if layout == "one":
        # Faust's per-record cost makes this layout slow: a prefix keeps the run short.
        few = events[:ONE_EVENTS]
        return [(None, e["context"]["groupId"].encode(), orjson.dumps(e)) for e in few], len(few)
    if layout == "one-raw":
        # What kcat or a third-party producer writes to the raw topic: one message per
        # record, keyed by its visitor (the collector's and the client's partitioning).
        few = events[:ONE_EVENTS]
        out = []
        for e in few:
            key = visitor_key(e)
            out.append((partition_for(key, PARTITIONS), key.encode(), orjson.dumps(e)))
        return out, len(few)
    out: list[tuple[int | None, bytes, bytes]] = []
    if layout == "raw":
        for start in range(0, len(events), TICK):
            for r in route_records(events[start : start + TICK], partitions=PARTITIONS):
                out.append((r.partition, r.key, r.value))
        return out, len(events)
    for start in range(0, len(events), TICK):
        # What the ingest agent forwards for one raw record: the events bound for each
        # partition of the account topic, as one record, in their order.
        groups: dict[int, list] = {}
        for e in events[start : start + TICK]:
            groups.setdefault(partition_for(e["context"]["groupId"], PARTITIONS), []).append(e)
        out.extend(
            (p, v[0]["context"]["groupId"].encode(), orjson.dumps({"batch": v}))
            for p, v in groups.items()
        )
    return out, len(events)


async def raw_ceiling(bootstrap: str, topic: str, n_records: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    seen = events = 0
    start = time.perf_counter()
    try:
        while seen < n_records:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    doc = orjson.loads(m.value)
                    if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
                        doc = doc["batch"]
                    events += len(doc) if isinstance(doc, list) else 1
                    seen += 1
    finally:
        await consumer.stop()
    return events / (time.perf_counter() - start)


def processed(url: str) -> float:
    """Events the worker applied; -1 while its /metrics does not answer."""
    found = counters(url, EVENTS_METRIC)
    return found.get(EVENTS_METRIC, 0.0) if found else -1.0


def worker_rate(settings: Settings, total: int) -> tuple[float, float | None]:
    """Events per second of a worker over ``total`` events, from its first processed event to
    its last, and its CPU time per event in that span in us (None where /proc is missing):
    the host's other load moves the CPU time less than the rate."""
    proc = spawn_worker(settings)
    url = metrics_url(settings)
    try:
        deadline = time.monotonic() + 600
        while processed(url) <= 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker did not start; see its log")
            time.sleep(0.05)
        t0, n0, cpu0 = time.perf_counter(), processed(url), cpu_seconds(proc.pid)
        while (n := processed(url)) < total:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker stalled; see its log")
            time.sleep(POLL_S)
        elapsed, cpu1 = time.perf_counter() - t0, cpu_seconds(proc.pid)
        cpu_us = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / (n - n0) * 1e6
        return (n - n0) / elapsed, cpu_us
    finally:
        stop_child(proc)


def faust_count_rate(bootstrap: str, topic: str, n_records: int, workdir: Path) -> float:
    """Records per second of a plain Faust counting agent reading ``topic``."""
    tag = uuid.uuid4().hex[:6]
    out = workdir / f"faust-count-{tag}.json"
    env = {
        **os.environ,
        "COUNT_BROKER": bootstrap,
        "COUNT_TOPIC": topic,
        "COUNT_TARGET": str(n_records),
        "COUNT_OUT": str(out),
        "COUNT_APP_ID": f"bench-count-{tag}",
    }
    script = Path(__file__).with_name("faust_count.py")
    # In the work directory: Faust writes its data directory (<app id>-data) where it runs.
    proc = spawn_child(
        [sys.executable, str(script), "worker"],
        env=env,
        log_path=workdir / f"{tag}.log",
        cwd=workdir,
    )
    try:
        deadline = time.monotonic() + 600
        while not out.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the Faust counting agent did not finish; see its log")
            time.sleep(0.1)
        time.sleep(0.1)  # the file is written in one call; let it land
        result = json.loads(out.read_text())
    finally:
        stop_child(proc)
        shutil.rmtree(workdir / f"{env['COUNT_APP_ID']}-data", ignore_errors=True)
    return float(result["records"]) / float(result["seconds"])


LAYOUTS = {
    "batched, account topic": "batched",
    "one event per record, account topic": "one",
    "batched, raw topic, ingest + score": "raw",
    "one event per record, raw topic, full": "one-raw",
}


def main() -> None:
    results: dict[str, dict] = {}
    workdir = Path(os.environ.get("TMPDIR", "/tmp"))
    with EmbeddedStack() as ep:
        for name, layout in LAYOUTS.items():
            if layout not in CHOSEN:
                continue
            on_raw = layout in ("raw", "one-raw")  # the full path: ingest, then scoring
            agents = "ingest,score" if on_raw else "score"
            settings = bench_settings(
                ep, "bench", agents=agents, partitions=PARTITIONS, session_timeout=6.0
            )
            ensure_topics(settings)
            topic = settings.raw_topic if on_raw else settings.events_topic
            recs, total = records(layout)
            print(f"{name}: preloading {total:,} events in {len(recs):,} records...", flush=True)
            preload(ep.kafka_bootstrap, topic, recs)
            ceiling = asyncio.run(raw_ceiling(ep.kafka_bootstrap, topic, len(recs)))
            rate, cpu_us = worker_rate(settings, total)
            row = {
                "events": total,
                "records": len(recs),
                "raw_ceiling_eps": ceiling,
                "worker_eps": rate,
                "worker_cpu_us_per_event": cpu_us,
                "ratio": rate / ceiling,
            }
            if not on_raw:
                # Its own group, read model and output topics; the same input topic.
                batch_settings = bench_settings(
                    ep, "bench", agents=agents, partitions=PARTITIONS, session_timeout=6.0
                ).replace(events_topic=topic, score_decisions="batch")
                ensure_topics(batch_settings)
                row["batch_decisions_eps"], _ = worker_rate(batch_settings, total)
            if layout in ("one", "one-raw"):
                # The counting agent's short run varies a lot (7,400-13,500 records/s seen
                # on one host in one hour): the faster of COUNT_RUNS runs is the yardstick.
                counts = [
                    faust_count_rate(ep.kafka_bootstrap, topic, len(recs), workdir)
                    for _ in range(COUNT_RUNS)
                ]
                count = max(counts)
                row["faust_count_runs_eps"] = counts
                row["faust_count_eps"] = count
                row["ratio_to_faust_count"] = rate / count
                if "batch_decisions_eps" in row:
                    row["batch_decisions_to_faust_count"] = row["batch_decisions_eps"] / count
            results[name] = row
    header = ("layout", "events", "records", "raw eps", "worker eps", "cpu us", "ratio")
    print("\n{:<36} {:>8} {:>8} {:>10} {:>11} {:>7} {:>6} {:>10}".format(*header, "per batch"))
    for name, r in results.items():
        per_batch, cpu_us = r.get("batch_decisions_eps"), r["worker_cpu_us_per_event"]
        print(
            f"{name:<36} {r['events']:8,} {r['records']:8,} {r['raw_ceiling_eps']:10,.0f} "
            f"{r['worker_eps']:11,.0f} "
            + (f"{cpu_us:7.1f}" if cpu_us is not None else f"{'-':>7}")
            + f" {r['ratio']:6.3f} "
            + (f"{per_batch:10,.0f}" if per_batch else f"{'-':>10}")
        )
    print(
        "(cpu us: the worker's CPU time per event, its threads included; per batch: the same "
        "records, score_decisions=batch)"
    )
    write_result("pipeline", results)
    summary = []
    batched = results.get("batched, account topic")
    if batched:
        summary.append(
            f"batched {batched['worker_eps']:,.0f} ev/s ({batched['ratio']:.3f}x raw; "
            f"{batched['batch_decisions_eps']:,.0f} deciding per batch)"
        )
    full = results.get("batched, raw topic, ingest + score")
    if full:
        summary.append(
            f"raw topic ingest+score {full['worker_eps']:,.0f} ev/s ({full['ratio']:.3f}x raw)"
        )
    for name, short in (
        ("one event per record, account topic", "one event/record"),
        ("one event per record, raw topic, full", "one event/record on raw, full path"),
    ):
        one = results.get(name)
        if not one:
            continue
        per_batch = one.get("batch_decisions_to_faust_count")
        print(
            f"{name}: a plain Faust counting agent on the same topic read "
            f"{one['faust_count_eps']:,.0f} events/s (best of "
            f"{', '.join(f'{c:,.0f}' for c in one['faust_count_runs_eps'])}); the worker is "
            f"{one['ratio_to_faust_count']:.2f}x it"
            + (f", {per_batch:.2f}x deciding per batch" if per_batch else "")
            + " (target >= 0.8x)"
        )
        ratio = one["ratio_to_faust_count"]
        summary.append(
            f"{short} {one['worker_eps']:,.0f} ev/s = {ratio:.2f}x Faust count"
            + (f" ({per_batch:.2f}x deciding per batch)" if per_batch else "")
        )
    print(f"SUMMARY pipeline: {', '.join(summary)} [targets: 30,000 ev/s batched; 0.8x]")


if __name__ == "__main__":
    main()
