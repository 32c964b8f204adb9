"""End-to-end throughput of one worker, against the raw ceiling on the same broker.

Preloads the event topic with simulated journeys (seeded), then measures in the same run:
- raw ceiling: a plain aiokafka consumer reading and JSON-decoding every record;
- the worker: decode, validate, state, features, score, alert policy, Redis read model,
  timed from its first processed event to the last (start-up and group join excluded).
Two layouts: batched records (the events of one account within a window, as the collector and
client write them) and one event per record (what kcat or a third-party producer writes).
Prints a table and writes benchmarks/results/pipeline.json.
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

import orjson
from kafka import KafkaProducer

from intent_stream.embedded import EmbeddedStack, free_port, spawn_child, stop_child
from intent_stream.settings import Settings, env_name, setting_fields
from intent_stream.simulate import SimulationConfig, simulate
from intent_stream.topics import ensure_topics

ACCOUNTS = int(os.environ.get("BENCH_ACCOUNTS", "3000"))
WINDOW = 2_000  # events grouped per account within this many consecutive events


def records(batched: bool) -> tuple[list[tuple[bytes, bytes]], int]:
    events = list(simulate(SimulationConfig(accounts=ACCOUNTS, days=90, seed=11)))
    if not batched:
        return [(e["context"]["groupId"].encode(), orjson.dumps(e)) for e in events], len(events)
    out: list[tuple[bytes, bytes]] = []
    for start in range(0, len(events), WINDOW):
        groups: dict[str, list] = {}
        for e in events[start : start + WINDOW]:
            groups.setdefault(e["context"]["groupId"], []).append(e)
        out.extend((k.encode(), orjson.dumps(v)) for k, v in groups.items())
    return out, len(events)


def preload(bootstrap: str, topic: str, recs: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512_000)
    for key, value in recs:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


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
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("intent_stream_events_processed_total{")
    )


def worker_rate(settings: Settings, total: int, workdir: Path) -> float:
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
    try:
        deadline = time.monotonic() + 600
        while processed(url) <= 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker did not start; see its log")
            time.sleep(0.05)
        t0, n0 = time.perf_counter(), processed(url)
        while (n := processed(url)) < total:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker stalled; see its log")
            time.sleep(0.05)
        return (n - n0) / (time.perf_counter() - t0)
    finally:
        stop_child(proc)


def main() -> None:
    results = {}
    with EmbeddedStack() as ep:
        stack_dir = Path(os.environ.get("TMPDIR", "/tmp"))
        for layout, batched in (("batched records", True), ("one event per record", False)):
            tag = uuid.uuid4().hex[:6]
            settings = Settings(
                kafka=ep.kafka_bootstrap,
                redis=ep.redis_url,
                app_id=f"bench-{tag}",
                events_topic=f"bench.{tag}.events",
                alerts_topic=f"bench.{tag}.alerts",
                dlq_topic=f"bench.{tag}.dlq",
                partitions=4,
                web_port=free_port(),
                redis_prefix=f"bench:{tag}:",
                log_level="warning",
            )
            ensure_topics(settings)
            recs, total = records(batched)
            print(f"{layout}: preloading {total:,} events in {len(recs):,} records...", flush=True)
            preload(ep.kafka_bootstrap, settings.events_topic, recs)
            ceiling = asyncio.run(raw_ceiling(ep.kafka_bootstrap, settings.events_topic, len(recs)))
            rate = worker_rate(settings, total, stack_dir)
            results[layout] = {
                "events": total,
                "records": len(recs),
                "raw_ceiling_eps": ceiling,
                "worker_eps": rate,
                "ratio": rate / ceiling,
            }
    header = ("layout", "events", "records", "raw eps", "worker eps", "ratio")
    print("\n{:<22} {:>8} {:>8} {:>10} {:>11} {:>6}".format(*header))
    for layout, r in results.items():
        print(
            f"{layout:<22} {r['events']:8,} {r['records']:8,} {r['raw_ceiling_eps']:10,.0f} "
            f"{r['worker_eps']:11,.0f} {r['ratio']:6.3f}"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
