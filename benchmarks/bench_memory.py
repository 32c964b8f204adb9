"""Memory per account at 100,000 accounts: the state table's bytes and the worker's RSS.

Starts one scoring worker (``agents=score``) on the embedded broker, warms it up, notes its
resident memory, then feeds BENCH_MEMORY_ACCOUNTS (default 100,000) synthetic accounts of 2-6
events each (identify calls with roles, page views, content and demo requests from 1-3
people), batched as the ingest agent writes them: one record per account partition holding
many accounts' events. When every event is applied it reports:

- the account state's serialized size: the latest changelog value of each account (what the
  table stores, replays and keeps in memory), read back from the changelog topic;
- the worker's RSS growth divided by the number of accounts (Python objects for the table,
  plus whatever the worker keeps per account besides), each RSS read at rest (one
  ``memory_trim_interval`` after the load, so that the worker has handed back the heap pages
  the load freed), overall and marginal: the accounts
  are fed in two halves and the growth over the second half, per account, leaves out the
  fixed costs that come with the first load (fetch buffers, caches, allocator arenas);
- the floor: the same accounts' state held in the simplest Python form, a dict of account id
  (str) -> state bytes, built from the changelog values read back above (exact-size copies, as
  the table keeps them) and measured with tracemalloc, per account; and the worker's RSS
  growth per account (overall and marginal) as a ratio to it. tracemalloc counts exactly the
  blocks the dict, its keys and values ask for, the same for the same data whatever else the
  host runs; it leaves out the allocator's own overhead per block (a fresh process's RssAnon
  read ~4% more for a dict of the same sizes), so the floor is a lower bound;
- the feed's throughput, for reference.

BENCH_MEMORY_TRIM sets the worker's ``memory_trim_interval`` (0: no trim) for A/B runs.

Prints a table and writes benchmarks/results/memory.json.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import tracemalloc

import orjson
from harness import (
    EVENTS_METRIC,
    POLL_S,
    bench_settings,
    counter,
    metrics_url,
    spawn_worker,
    write_result,
)
from kafka import KafkaProducer

from intent_stream.embedded import EmbeddedStack, stop_child
from intent_stream.topics import ACCOUNT_STATE_TABLE, changelog_topic, ensure_topics, partition_for

ACCOUNTS = int(os.environ.get("BENCH_MEMORY_ACCOUNTS", "100000"))
TRIM = os.environ.get("BENCH_MEMORY_TRIM")  # the worker's memory_trim_interval, for A/B runs
PARTITIONS = 4
PER_RECORD = 600  # events per record (one account partition each)
TARGET_BYTES = 2048
BASE_TS = 1_790_000_000.0  # 2026-09-21, any fixed time: the workload is deterministic
ROLES = ["engineering", "it", "finance", "executive", "procurement", "marketing"]
PAGES = ["/pricing", "/product", "/blog/intent-data", "/docs/api", "/compare/acme-vs-x", "/"]
TRACKS = ["Whitepaper Downloaded", "Webinar Attended", "Demo Requested", "Email Clicked"]


def account_events(rng: random.Random, i: int) -> list[dict]:
    account = f"acct-{i:06d}.example"
    people = [f"u-{i}-{p}" for p in range(rng.randint(1, 3))]
    ts = BASE_TS + rng.uniform(0, 30 * 86400)
    out = []
    for n in range(rng.randint(2, 6)):
        person = rng.choice(people)
        ts += rng.uniform(60, 3 * 86400)
        base = {
            "userId": person,
            "messageId": f"m-{i}-{n}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts)),
            "context": {"groupId": account},
        }
        roll = rng.random()
        if n == 0 or roll < 0.2:
            base |= {
                "type": "identify",
                "traits": {"email": f"{person}@{account}", "role": rng.choice(ROLES)},
            }
        elif roll < 0.7:
            base |= {"type": "page", "properties": {"path": rng.choice(PAGES)}}
        else:
            base |= {"type": "track", "event": rng.choice(TRACKS)}
        out.append(base)
    return out


def workload(seed: int = 5) -> tuple[list[tuple[int, bytes, bytes]], int]:
    rng = random.Random(seed)
    by_partition: dict[int, list[dict]] = {p: [] for p in range(PARTITIONS)}
    records: list[tuple[int, bytes, bytes]] = []
    total = 0
    for i in range(ACCOUNTS):
        events = account_events(rng, i)
        total += len(events)
        p = partition_for(events[0]["context"]["groupId"], PARTITIONS)
        by_partition[p].extend(events)
        if len(by_partition[p]) >= PER_RECORD:
            batch = by_partition[p]
            records.append((p, batch[0]["context"]["groupId"].encode(), orjson.dumps(batch)))
            by_partition[p] = []
    for p, batch in by_partition.items():
        if batch:
            records.append((p, batch[0]["context"]["groupId"].encode(), orjson.dumps(batch)))
    return records, total


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def changelog_values(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """Each key's latest value on the changelog (both as their bytes on the topic)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    latest: dict[bytes, bytes] = {}
    try:
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            idle = 0 if batch else idle + 1
            for msgs in batch.values():
                for m in msgs:
                    if m.key is not None and m.value is not None:
                        latest[m.key] = m.value
    finally:
        await consumer.stop()
    return latest


def floor_bytes(latest: dict[bytes, bytes]) -> int:
    """Bytes that ``{account id: state bytes}`` of ``latest``'s accounts takes (tracemalloc).

    The keys are decoded to the account ids they encode (JSON strings on the changelog) and
    the values copied into objects of their own size, as the worker's table holds them
    (``json_bytes``): what is measured is allocated here, not shared with ``latest``.
    """
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        floor = {orjson.loads(k): b"".join((v, b"")) for k, v in latest.items()}
        size = tracemalloc.get_traced_memory()[0] - before
        del floor  # named until measured: a dict no name holds would be freed before
    finally:
        tracemalloc.stop()
    return size


def wait_processed(url: str, proc, target: float, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (n := counter(url, EVENTS_METRIC)) < target:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker stopped or stalled at {n:,.0f} of {target:,.0f} events")
        time.sleep(POLL_S)
    return n


def main() -> None:
    print(f"memory: building {ACCOUNTS:,} synthetic accounts...", flush=True)
    records, total = workload()
    with EmbeddedStack() as ep:
        settings = bench_settings(
            ep,
            "bench-mem",
            agents="score",
            partitions=PARTITIONS,
            session_timeout=6.0,
            **({"memory_trim_interval": float(TRIM)} if TRIM else {}),
        )
        ensure_topics(settings)
        proc = spawn_worker(settings)
        url = metrics_url(settings)
        producer = KafkaProducer(
            bootstrap_servers=ep.kafka_bootstrap,
            linger_ms=20,
            batch_size=1 << 20,
            max_request_size=8 << 20,
        )
        try:
            # Warm-up: one small account per partition, so the group has joined, every
            # partition is assigned and the code paths have run before the baseline.
            warm = [account_events(random.Random(p), 10_000_000 + p) for p in range(64)]
            warm_total = sum(len(w) for w in warm)
            for events in warm:
                key = events[0]["context"]["groupId"]
                producer.send(
                    settings.events_topic,
                    key=key.encode(),
                    value=orjson.dumps(events),
                    partition=partition_for(key, PARTITIONS),
                )
            producer.flush()
            wait_processed(url, proc, warm_total, timeout=180)
            time.sleep(1.0)  # let the warm-up's changelog writes and Redis flush settle
            base_rss = rss_bytes(proc.pid)
            print(
                f"memory: worker ready, RSS {base_rss / 2**20:.0f} MiB; feeding "
                f"{total:,} events in {len(records):,} records...",
                flush=True,
            )
            # Two halves: the RSS growth between them is the marginal cost of an account,
            # free of fixed costs that arrive with the first load (fetch buffers, caches).
            half = len(records) // 2
            half_events = sum(len(orjson.loads(v)) for _, _, v in records[:half])
            half_accounts = len({e["context"]["groupId"] for _, _, v in records[:half]
                                 for e in orjson.loads(v)})  # fmt: skip
            feed_seconds = 0.0
            rss_points = []
            for part, target in ((records[:half], half_events), (records[half:], total)):
                t0 = time.perf_counter()
                for partition, key, value in part:
                    producer.send(settings.events_topic, key=key, value=value, partition=partition)
                producer.flush()
                wait_processed(url, proc, warm_total + target, timeout=900)
                feed_seconds += time.perf_counter() - t0
                # At rest: the worker's next memory trim has handed back what the load
                # freed (memory_trim_interval), as it does in service after a backlog.
                time.sleep(settings.memory_trim_interval + 1.0)
                rss_points.append(rss_bytes(proc.pid))
            rss_half, rss = rss_points
            accounts_gauge = counter(url, "intent_stream_accounts")
        finally:
            producer.close()
            stop_child(proc, timeout=30)
        latest = asyncio.run(
            changelog_values(ep.kafka_bootstrap, changelog_topic(settings, ACCOUNT_STATE_TABLE))
        )
    values = sorted(len(k) + len(v) for k, v in latest.items())
    floor = floor_bytes(latest) / len(latest)
    growth = (rss - base_rss) / ACCOUNTS
    marginal = (rss - rss_half) / (ACCOUNTS - half_accounts)
    result = {
        "accounts": ACCOUNTS,
        "events": total,
        "accounts_in_changelog": len(values),
        "accounts_gauge": accounts_gauge,
        "state_bytes_mean": statistics.fmean(values),
        "state_bytes_p50": values[len(values) // 2],
        "state_bytes_p99": values[int(len(values) * 0.99)],
        "state_bytes_max": values[-1],
        "rss_before_bytes": base_rss,
        "rss_after_bytes": rss,
        "rss_after_half_bytes": rss_half,
        "rss_growth_bytes_per_account": growth,
        "rss_marginal_bytes_per_account": marginal,
        "floor_bytes_per_account": floor,
        "rss_growth_to_floor": growth / floor,
        "rss_marginal_to_floor": marginal / floor,
        "feed_events_per_s": total / feed_seconds,
    }
    r = result
    rows = [
        ("state, serialized (changelog key + value), mean", f"{r['state_bytes_mean']:,.0f} B"),
        ("  p50 / p99 / max", f"{r['state_bytes_p50']:,} / {r['state_bytes_p99']:,} / "
         f"{r['state_bytes_max']:,} B"),
        ("worker RSS: warm / half / all", f"{base_rss / 2**20:.0f} / {rss_half / 2**20:.0f} / "
         f"{rss / 2**20:.0f} MiB"),
        ("worker RSS growth per account, overall", f"{growth:,.0f} B"),
        ("  marginal (second half of the accounts)", f"{marginal:,.0f} B"),
        ("floor: {account id: state bytes}, tracemalloc", f"{floor:,.0f} B"),
        ("worker RSS growth / floor: overall / marginal", f"{growth / floor:.2f}x / "
         f"{marginal / floor:.2f}x"),
        ("feed throughput (batched, scoring worker)", f"{r['feed_events_per_s']:,.0f} events/s"),
    ]  # fmt: skip
    print(f"\nmemory per account, {ACCOUNTS:,} accounts ({total:,} events; target <= 2 KB)")
    for name, value in rows:
        print(f"{name:<46} {value:>22}")
    write_result("memory", result)
    worst = max(result["state_bytes_mean"], marginal)
    status = "ok" if worst <= TARGET_BYTES else "MISS"
    print(
        f"SUMMARY memory: {result['state_bytes_mean']:,.0f} B serialized state and "
        f"{marginal:,.0f} B RSS per account (marginal; {growth:,.0f} B overall) at "
        f"{ACCOUNTS:,} accounts; RSS {marginal / floor:.2f}x (marginal) and "
        f"{growth / floor:.2f}x (overall) the floor of {floor:,.0f} B, a dict of id -> state "
        f"bytes [{status}]"
    )


if __name__ == "__main__":
    main()
