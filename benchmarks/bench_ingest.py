"""Throughput of the ingest agent (validate, normalise, de-duplicate, resolve, route), end to end.

Preloads the raw topic with seeded simulated journeys routed as the collector and the client
write them (one Segment batch per visitor partition per BENCH_TICK events), half the anonymous
visitors without an account (identity resolution and the pending-visitor table at work), then
measures in the same run:

- raw ceiling: a plain aiokafka consumer reading and JSON-decoding every record of the raw topic;
- ingest: one worker's ingest agent, timed from its first routed message to the last
  (start-up and group join excluded), counting messages validated and routed;
- end to end: the same worker's scoring agent applying the forwarded events.

Both agents share the worker's one process (and core). Prints a table and writes
benchmarks/results/ingest.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from bench_pipeline import preload, raw_ceiling

from intent_stream.client import route_records
from intent_stream.embedded import EmbeddedStack, free_port, spawn_child, stop_child
from intent_stream.settings import Settings, env_name, setting_fields
from intent_stream.simulate import SimulationConfig, simulate
from intent_stream.topics import ensure_topics

ACCOUNTS = int(os.environ.get("BENCH_ACCOUNTS", "3000"))
TICK = int(os.environ.get("BENCH_TICK", "2000"))  # events the tracker side batches at once
PARTITIONS = 4


def raw_records() -> tuple[list[tuple[int, bytes, bytes]], int]:
    config = SimulationConfig(accounts=ACCOUNTS, days=90, seed=11, reveal_share=0.5)
    events = list(simulate(config))
    out: list[tuple[int, bytes, bytes]] = []
    for start in range(0, len(events), TICK):
        for record in route_records(events[start : start + TICK], partitions=PARTITIONS):
            out.append((record.partition, record.key, record.value))
    return out, len(events)


def counters(url: str) -> dict[str, float]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        base = name.partition("{")[0]
        totals[base] = totals.get(base, 0.0) + float(value)
    return totals


def run_worker(settings: Settings, total: int, workdir: Path) -> dict[str, float]:
    env = {
        **os.environ,
        **{env_name(f.name): str(getattr(settings, f.name)) for f in setting_fields()},
    }
    proc = spawn_child(
        [sys.executable, "-m", "intent_stream", "worker"],
        env=env,
        log_path=workdir / f"{settings.app_id}.log",
    )
    url = f"http://127.0.0.1:{settings.web_port}/metrics"

    def routed(c: dict[str, float]) -> float:
        return c.get("intent_stream_ingest_messages_total", 0.0)

    try:
        deadline = time.monotonic() + 900
        while routed(c := counters(url)) <= 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker did not start; see its log")
            time.sleep(0.05)
        t0, n0, a0 = time.perf_counter(), routed(c), c["intent_stream_events_processed_total"]
        last_report = t0
        while routed(c := counters(url)) < total:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker stalled; see its log")
            if time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                print(f"  ingested {routed(c):,.0f} of {total:,}", flush=True)
            time.sleep(0.05)
        t_ingest = time.perf_counter()
        ingest_eps = (routed(c) - n0) / (t_ingest - t0)
        # Events still waiting for identification are never applied: wait until applying stops.
        applied, still = c["intent_stream_events_processed_total"], 0
        while still < 20:
            time.sleep(0.1)
            now = counters(url)["intent_stream_events_processed_total"]
            still = still + 1 if now == applied else 0
            applied = now
        t_end = time.perf_counter() - 2.0  # the quiet 2 s that proved it finished
        c = counters(url)
        return {
            "ingest_eps": ingest_eps,
            "end_to_end_eps": (applied - a0) / (t_end - t0),
            "applied": applied,
            "pended": c.get("intent_stream_pending_events_total", 0.0),
            "forwarded_records": c.get("intent_stream_ingest_forwarded_records_total", 0.0),
        }
    finally:
        stop_child(proc)


def main() -> None:
    with EmbeddedStack() as ep:
        tag = uuid.uuid4().hex[:6]
        settings = Settings(
            kafka=ep.kafka_bootstrap,
            redis=ep.redis_url,
            app_id=f"bench-{tag}",
            raw_topic=f"bench.{tag}.raw",
            identity_topic=f"bench.{tag}.identity",
            events_topic=f"bench.{tag}.events",
            alerts_topic=f"bench.{tag}.alerts",
            dlq_topic=f"bench.{tag}.dlq",
            alerts_dlq_topic=f"bench.{tag}.alerts-dlq",
            partitions=PARTITIONS,
            web_port=free_port(),
            redis_prefix=f"bench:{tag}:",
            log_level="warning",
        )
        ensure_topics(settings)
        recs, total = raw_records()
        print(f"preloading {total:,} events in {len(recs):,} raw records...", flush=True)
        preload(ep.kafka_bootstrap, settings.raw_topic, recs)
        ceiling = asyncio.run(raw_ceiling(ep.kafka_bootstrap, settings.raw_topic, len(recs)))
        result = run_worker(settings, total, Path(os.environ.get("TMPDIR", "/tmp")))
    result.update(events=total, raw_records=len(recs), raw_ceiling_eps=ceiling)
    print(f"\n{'measure':<34} {'value':>12}")
    print(f"{'events (raw records)':<34} {total:>12,} ({len(recs):,})")
    print(f"{'raw ceiling (aiokafka + orjson)':<34} {ceiling:>12,.0f} events/s")
    print(f"{'ingest: validated and routed':<34} {result['ingest_eps']:>12,.0f} events/s")
    print(f"{'  ratio to the raw ceiling':<34} {result['ingest_eps'] / ceiling:>12.3f}")
    print(f"{'end to end (ingest + scoring)':<34} {result['end_to_end_eps']:>12,.0f} events/s")
    print(f"{'forwarded records':<34} {result['forwarded_records']:>12,.0f}")
    print(f"{'events pended for identification':<34} {result['pended']:>12,.0f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
