"""Throughput and latency of the HTTP collector, end to end to the broker's acknowledgement.

Starts the embedded broker, ``intent-stream collector`` as its own process (as in production),
and posts ``/v1/batch`` requests of BENCH_BATCH events (~300 bytes each, seeded) from
BENCH_CONNECTIONS concurrent keep-alive connections until BENCH_EVENTS events were accepted.
Each answer is a 200 only after the broker acknowledged the request's records, so the figures
include the Kafka write. Two runs: plain JSON bodies and gzip bodies (what SDKs with gzip on
send). Prints a table and writes benchmarks/results/collector.json.
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

import aiohttp
import orjson
from harness import write_result

from intent_stream.embedded import EmbeddedStack, free_port, spawn_child, stop_child
from intent_stream.settings import Settings, env_name, setting_fields
from intent_stream.topics import ensure_topics

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
BATCH = int(os.environ.get("BENCH_BATCH", "100"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
WRITE_KEY = "wk_bench"
PATHS = ["/pricing", "/product", "/compare/acme-vs-x", "/blog/intent-data", "/docs/api", "/"]
EVENT_NAMES = ["Whitepaper Downloaded", "Demo Requested", "Email Clicked", "Feature Used"]


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


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def main() -> None:
    bodies = make_bodies()
    total = len(bodies) * BATCH
    mean_event = statistics.mean(len(b) for b in bodies) / BATCH
    results = {}
    with EmbeddedStack(redis=False) as ep:
        workdir = Path(os.environ.get("TMPDIR", "/tmp"))
        for layout, gzipped in (("json", False), ("gzip", True)):
            tag = uuid.uuid4().hex[:6]
            settings = Settings(
                kafka=ep.kafka_bootstrap,
                app_id=f"bench-{tag}",
                raw_topic=f"bench.{tag}.raw",
                events_topic=f"bench.{tag}.events",
                alerts_topic=f"bench.{tag}.alerts",
                dlq_topic=f"bench.{tag}.dlq",
                identity_topic=f"bench.{tag}.identity",
                partitions=8,
                write_keys=WRITE_KEY,
                collector_port=free_port(),
                log_level="warning",
            )
            ensure_topics(settings)
            env = {
                **os.environ,
                **{env_name(f.name): str(getattr(settings, f.name)) for f in setting_fields()},
            }
            log = workdir / f"bench-collector-{tag}.log"
            proc = spawn_child(
                [sys.executable, "-m", "intent_stream", "collector"], env=env, log_path=log
            )
            base = f"http://127.0.0.1:{settings.collector_port}"
            try:
                wait_healthy(base + "/healthz", proc, log)
                print(
                    f"{layout}: posting {total:,} events in {len(bodies):,} requests...", flush=True
                )
                cpu0 = cpu_seconds(proc.pid)
                elapsed, latencies, failures = asyncio.run(
                    load(base + "/v1/batch", bodies, gzipped=gzipped)
                )
                cpu1 = cpu_seconds(proc.pid)
            finally:
                stop_child(proc)
            if failures:
                raise SystemExit(f"{failures} requests failed; see {log}")
            q = statistics.quantiles(latencies, n=100)
            results[layout] = {
                "events": total,
                "requests": len(bodies),
                "events_per_request": BATCH,
                "mean_event_bytes": round(mean_event),
                "connections": CONNECTIONS,
                "events_per_s": total / elapsed,
                "requests_per_s": len(bodies) / elapsed,
                "p50_ms": q[49] * 1000,
                "p99_ms": q[98] * 1000,
                # The machine is shared: CPU per event is steadier than wall-clock throughput.
                "collector_cpu_us_per_event": (
                    (cpu1 - cpu0) / total * 1e6 if cpu0 is not None and cpu1 is not None else None
                ),
            }
    header = (
        "body",
        "events",
        "requests",
        "events/s",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "CPU us/ev",
    )
    print("\n{:<6} {:>8} {:>9} {:>10} {:>11} {:>7} {:>7} {:>10}".format(*header))
    for layout, r in results.items():
        cpu = r["collector_cpu_us_per_event"]
        print(
            f"{layout:<6} {r['events']:8,} {r['requests']:9,} {r['events_per_s']:10,.0f} "
            f"{r['requests_per_s']:11,.1f} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} "
            + (f"{cpu:10.1f}" if cpu is not None else f"{'n/a':>10}")
        )
    print(
        f"({BATCH} events of ~{round(mean_event)} bytes per request, {CONNECTIONS} connections, "
        "200 only after the broker's ack)"
    )
    write_result("collector", results)
    shown = ", ".join(
        f"{layout} {r['events_per_s']:,.0f} ev/s (p99 {r['p99_ms']:.0f} ms)"
        for layout, r in results.items()
    )
    print(f"SUMMARY collector: {shown}")


if __name__ == "__main__":
    main()
