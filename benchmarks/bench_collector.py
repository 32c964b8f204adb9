"""Throughput and latency of the HTTP collector, end to end to the broker's acknowledgement,
against a raw producer's ceiling on the same broker.

Starts the embedded broker, ``intent-stream collector`` as its own process (as in production),
and posts ``/v1/batch`` requests of BENCH_BATCH events (~300 bytes each, seeded) from
BENCH_CONNECTIONS concurrent keep-alive connections until BENCH_EVENTS events were accepted.
Each answer is a 200 only after the broker acknowledged the request's records, so the figures
include the Kafka write. Two runs: plain JSON bodies and gzip bodies (what SDKs with gzip on
send).

Between them, in the same run and on the same broker, the raw ceiling: the same events with
no HTTP, no parsing and no checks. The records the collector writes for each request are
built before the clock starts with the collector's own code (``merge_batch``, the
``receivedAt`` stamp, ``route_records``: one ``{"batch": [...]}`` record per destination
partition), so they are the same records with the same bytes. A producer made by the
collector's ``kafka_producer`` (aiokafka, acks=all, the same linger and batch size) writes
them to a topic of its own the way the collector publishes: BENCH_CONNECTIONS concurrent
senders, each queueing one request's records and awaiting all their acks before taking the
next. The collector's events/s over the ceiling's is its ratio to raw; the records each side
wrote are counted (the collector's from its /metrics) to show they match.

Prints a table and writes benchmarks/results/collector.json.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import random
import statistics
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from harness import bench_settings, counter, cpu_seconds, write_result

from intent_stream.client import RawRecord, route_records, utc_iso
from intent_stream.collector import kafka_producer, merge_batch
from intent_stream.embedded import (
    EmbeddedEndpoints,
    EmbeddedStack,
    free_port,
    spawn_child,
    stop_child,
)
from intent_stream.settings import Settings, env_name, setting_fields
from intent_stream.topics import ensure_topics

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
BATCH = int(os.environ.get("BENCH_BATCH", "100"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
PARTITIONS = 8
WRITE_KEY = "wk_bench"
PATHS = ["/pricing", "/product", "/compare/acme-vs-x", "/blog/intent-data", "/docs/api", "/"]
EVENT_NAMES = ["Whitepaper Downloaded", "Demo Requested", "Email Clicked", "Feature Used"]
#: Records the collector wrote, from its /metrics: the raw producer must write as many.
RECORDS_METRIC = "intent_stream_collector_records_total"


def make_bodies(seed: int = 7) -> list[bytes]:
    """Seeded /v1/batch bodies: BATCH events each, about 300 bytes per event."""
    rng = random.Random(seed)
    # 20,000 visitors, ~5 events each over the run (a visitor's events arrive over time).
    visitors = [f"anon-{uuid.UUID(int=rng.getrandbits(128))}" for _ in range(20_000)]
    bodies = []
    for b in range(EVENTS // BATCH):
        batch = []
        for i in range(BATCH):
            visitor = rng.choice(visitors)
            account = f"account-{rng.randrange(3_000)}.example"
            base = {
                "anonymousId": visitor,
                "messageId": f"bench-{seed}-{b}-{i}",
                "timestamp": "2026-11-20T10:00:00.000Z",
                "context": {"groupId": account, "userAgent": "Mozilla/5.0 (bench)"},
            }
            if rng.random() < 0.8:
                path = rng.choice(PATHS)
                batch.append(
                    {
                        **base,
                        "type": "page",
                        "properties": {"path": path, "url": "https://www.vendor.example" + path},
                    }
                )
            else:
                batch.append(
                    {**base, "type": "track", "event": rng.choice(EVENT_NAMES), "properties": {}}
                )
        bodies.append(orjson.dumps({"batch": batch, "sentAt": "2026-11-20T10:00:01.000Z"}))
    return bodies


def collector_records(bodies: list[bytes]) -> list[list[RawRecord]]:
    """Per request, the records the collector writes for it, built by the collector's code.

    What the collector adds to each message (``sentAt`` from the batch, ``receivedAt``) is
    added here too, so every record has the collector's bytes; only ``receivedAt``'s value
    differs, not its length. The bodies carry a ``messageId`` each, so none is generated.
    """
    received = utc_iso(time.time())
    out = []
    for body in bodies:
        messages = merge_batch(orjson.loads(body))
        for message in messages:
            message["receivedAt"] = received
        out.append(route_records(messages, partitions=PARTITIONS))
    return out


def run_settings(ep: EmbeddedEndpoints) -> Settings:
    """Settings with topics and a collector port of their own, for one run."""
    return bench_settings(
        ep, "bench-collector", partitions=PARTITIONS, write_keys=WRITE_KEY,
        collector_port=free_port(),
    )  # fmt: skip


async def load(url: str, bodies: list[bytes], *, gzipped: bool) -> tuple[float, list[float], int]:
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        bodies = [gzip.compress(b, compresslevel=1) for b in bodies]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    failures = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, failures


async def raw_load(
    settings: Settings, requests: list[list[RawRecord]]
) -> tuple[float, list[float], float]:
    """Write each request's records as the collector publishes them, with a producer made as
    the collector makes its own; return the seconds taken, each request's seconds from its
    first send to its last ack, and this process's CPU seconds meanwhile."""
    producer = kafka_producer(settings)
    await producer.start()
    topic = settings.raw_topic
    pending = iter(requests)
    latencies: list[float] = []

    async def sender() -> None:
        # One "connection": the collector's _publish for one request at a time.
        for records in pending:
            start = time.perf_counter()
            acks = [
                await producer.send(topic, r.value, key=r.key, partition=r.partition)
                for r in records
            ]
            await asyncio.gather(*acks)
            latencies.append(time.perf_counter() - start)

    try:
        # The collector's producer knows the topic's partitions before its first request.
        await producer.partitions_for(topic)
        cpu0, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(CONNECTIONS)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    finally:
        await producer.stop()
    return elapsed, latencies, cpu


def wait_healthy(url: str, proc, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the collector exited; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the collector did not start; see {log}")


def figures(
    events: int, requests: int, records: int, elapsed: float, latencies: list[float]
) -> dict[str, Any]:
    """The figures the collector's runs and the raw run share."""
    q = statistics.quantiles(latencies, n=100)
    return {
        "events": events,
        "requests": requests,
        "records": records,
        "events_per_request": BATCH,
        "connections": CONNECTIONS,
        "events_per_s": events / elapsed,
        "requests_per_s": requests / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


def run_collector(ep: EmbeddedEndpoints, bodies: list[bytes], *, gzipped: bool) -> dict[str, Any]:
    """One run of the collector process: post every body, return its figures."""
    layout = "gzip" if gzipped else "json"
    total = len(bodies) * BATCH
    settings = run_settings(ep)
    ensure_topics(settings)
    env = {
        **os.environ,
        **{env_name(f.name): str(getattr(settings, f.name)) for f in setting_fields()},
    }
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"{settings.app_id}.log"
    proc = spawn_child([sys.executable, "-m", "intent_stream", "collector"], env=env, log_path=log)
    base = f"http://127.0.0.1:{settings.collector_port}"
    try:
        wait_healthy(base + "/healthz", proc, log)
        print(f"{layout}: posting {total:,} events in {len(bodies):,} requests...", flush=True)
        cpu0 = cpu_seconds(proc.pid)
        elapsed, latencies, failures = asyncio.run(
            load(base + "/v1/batch", bodies, gzipped=gzipped)
        )
        cpu1 = cpu_seconds(proc.pid)
        records = int(counter(base + "/metrics", RECORDS_METRIC))
    finally:
        stop_child(proc)
    if failures:
        raise SystemExit(f"{failures} requests failed; see {log}")
    return {
        **figures(total, len(bodies), records, elapsed, latencies),
        "mean_event_bytes": round(statistics.mean(len(b) for b in bodies) / BATCH),
        # The machine is shared: CPU per event is steadier than wall-clock throughput.
        "collector_cpu_us_per_event": (
            (cpu1 - cpu0) / total * 1e6 if cpu0 is not None and cpu1 is not None else None
        ),
    }


def run_raw(ep: EmbeddedEndpoints, requests: list[list[RawRecord]]) -> dict[str, Any]:
    """The raw ceiling: the collector's records through a plain producer, return its figures."""
    records = [r for request in requests for r in request]
    total = sum(r.events for r in records)
    settings = run_settings(ep)
    ensure_topics(settings)
    print(f"raw: producing {total:,} events in {len(records):,} records...", flush=True)
    elapsed, latencies, cpu = asyncio.run(raw_load(settings, requests))
    return {
        **figures(total, len(requests), len(records), elapsed, latencies),
        "mean_record_bytes": round(statistics.mean(len(r.value) for r in records)),
        "producer_cpu_us_per_event": cpu / total * 1e6,
    }


def main() -> None:
    bodies = make_bodies()
    requests = collector_records(bodies)
    results: dict[str, dict[str, Any]] = {}
    with EmbeddedStack(redis=False) as ep:
        # The ceiling between the two collector runs, so that both are measured next to it
        # on a host whose speed drifts.
        results["json"] = run_collector(ep, bodies, gzipped=False)
        results["raw"] = raw = run_raw(ep, requests)
        results["gzip"] = run_collector(ep, bodies, gzipped=True)
    for layout in ("json", "gzip"):
        results[layout]["raw_ceiling_eps"] = raw["events_per_s"]
        results[layout]["ratio_to_raw"] = results[layout]["events_per_s"] / raw["events_per_s"]
    header = (
        "body",
        "events",
        "requests",
        "events/s",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "CPU us/ev",
        "x raw",
    )
    print("\n{:<6} {:>8} {:>9} {:>10} {:>11} {:>7} {:>7} {:>10} {:>6}".format(*header))
    for layout in ("json", "gzip", "raw"):
        r = results[layout]
        cpu = r.get("collector_cpu_us_per_event", r.get("producer_cpu_us_per_event"))
        ratio = r.get("ratio_to_raw")
        print(
            f"{layout:<6} {r['events']:8,} {r['requests']:9,} {r['events_per_s']:10,.0f} "
            f"{r['requests_per_s']:11,.1f} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} "
            + (f"{cpu:10.1f}" if cpu is not None else f"{'n/a':>10}")
            + (f" {ratio:6.3f}" if ratio is not None else f" {'-':>6}")
        )
    print(
        f"({BATCH} events of ~{results['json']['mean_event_bytes']} bytes per request, "
        f"{CONNECTIONS} connections, 200 only after the broker's ack;\n"
        f" CPU: the collector process's; it wrote {results['json']['records']:,} / "
        f"{results['gzip']['records']:,} records)\n"
        f"(raw: the same {raw['records']:,} records of ~{raw['mean_record_bytes']:,} bytes, no "
        "HTTP and no checks, from a producer\n"
        f" made as the collector's (acks=all), {CONNECTIONS} requests' records in flight; "
        "CPU: the producer's)"
    )
    write_result("collector", results)
    shown = ", ".join(
        f"{layout} {results[layout]['events_per_s']:,.0f} ev/s "
        f"(p99 {results[layout]['p99_ms']:.0f} ms)"
        for layout in ("json", "gzip")
    )
    print(
        f"SUMMARY collector: {shown}; raw producer {raw['events_per_s']:,.0f} ev/s: json "
        f"{results['json']['ratio_to_raw']:.3f}x, gzip {results['gzip']['ratio_to_raw']:.3f}x"
    )


if __name__ == "__main__":
    main()
