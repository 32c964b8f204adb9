"""Kill -9 mid-stream, lose a worker, feed poison, take Redis away: output must equal input.

Real worker processes on the embedded broker, as Kafka's own system tests bounce clients.
The figures each scenario measures (restart-to-processing, take-over) are printed; run with
``-s`` to see them. ``make test`` and CI run them all.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from intent_stream.embedded import free_port, spawn_child, stop_child

from .conftest import read_topic, wait_until
from .reliability import (
    T0,
    account_counts,
    kill9,
    metric,
    publish,
    restart_to_processing,
    wait_for_counts,
    workload,
)
from .test_alerts import (  # noqa: F401 - fixtures
    alert_settings,
    start_forwarder,
    webhooks,
)

pytestmark = pytest.mark.integration

#: The crash test's size: the issue's 50,000 events, in records of 25 (one account each).
CRASH_EVENTS = 50_000


def test_kill_9_mid_stream_loses_nothing_and_counts_nothing_twice(
    alert_settings,  # noqa: F811
    start_worker,
    producer,
    endpoints,
    webhooks,  # noqa: F811
    start_forwarder,  # noqa: F811
):
    hook = webhooks()
    # Simulated event times are not "now": accept them (max_clock_skew=0).
    settings = alert_settings.replace(webhook=hook.url, max_clock_skew=0.0)
    load = workload(accounts=200, per_account=CRASH_EVENTS // 200, hot=20, per_record=25)
    assert load.events == CRASH_EVENTS
    seed = random.randrange(1 << 30)
    kill_at = random.Random(seed).randint(len(load.records) // 5, len(load.records) * 3 // 5)
    print(f"\ncrash: {load.events} events in {len(load.records)} raw records; seed {seed}, "
          f"kill -9 after {kill_at} ingested records")  # fmt: skip

    worker = start_worker(settings)
    forwarder = start_forwarder(settings, group=f"{settings.app_id}-fwd")
    publish(producer, settings.raw_topic, load.records)
    wait_until(
        lambda: metric(worker, "intent_stream_ingest_records_total") >= kill_at,
        timeout=180,
        what=f"{kill_at} ingested records",
        every=0.05,
    )
    kill9(worker)
    worker, recovery = restart_to_processing(start_worker, settings)
    print(f"crash: restart-to-processing {recovery:.1f}s")
    assert recovery < 30, "the restart must reach processing within 30 s (issue 9)"

    counts = wait_for_counts(settings, load.sent, timeout=150, workers=[worker])
    assert counts == dict(load.sent), "per-account state must be exact after the crash"
    expected = load.alert_ids()  # at least the hot accounts alert
    on_topic = read_topic(endpoints, settings.alerts_topic, count=len(expected), timeout=60)
    published = {orjson.loads(r.value)["alert_id"] for r in on_topic}
    assert published >= expected
    wait_until(
        lambda: set(hook.delivered()) >= published, timeout=120, what="every alert delivered"
    )
    delivered = hook.delivered()
    assert set(delivered) == published
    assert set(delivered.values()) == {1}, "an alert id reached the webhook twice"
    assert forwarder.deliveries("delivered") == len(published)
    skipped = metric(worker, "intent_stream_events_skipped_total")
    refilled = metric(worker, "intent_stream_records_refilled_total")
    print(f"crash: {refilled:.0f} records refilled after a skipped fetch; "
          f"{skipped:.0f} replayed events skipped by the replay guard; "
          f"{len(on_topic)} alert records on the topic, {len(published)} alert ids, each "
          f"posted once")  # fmt: skip
    assert "Traceback" not in worker.log()


def test_a_survivor_takes_over_a_killed_workers_partitions_with_complete_state(
    alert_settings,  # noqa: F811
    start_worker,
    producer,
    endpoints,
    tmp_path,
):
    settings = alert_settings.replace(max_clock_skew=0.0)
    first = workload(accounts=40, per_account=50, hot=0, per_record=25)
    a = start_worker(settings.replace(data_dir=str(tmp_path / "a")))
    b = start_worker(settings.replace(web_port=free_port(), data_dir=str(tmp_path / "b")))
    publish(producer, settings.raw_topic, first.records)
    wait_until(
        lambda: metric(b, "intent_stream_records_processed_total") > 0,
        timeout=90,
        what="the second worker processing its partitions",
    )
    assert wait_for_counts(settings, first.sent, timeout=120, workers=[a, b]) == dict(first.sent)
    # Both had partitions: each scored some records.
    for handle in (a, b):
        assert metric(handle, "intent_stream_records_processed_total") > 0

    kill9(b)
    killed_at = time.monotonic()
    # Phase two: the same accounts again (their state must carry over) plus hot ones.
    names = sorted(first.sent)
    second = workload(accounts=names, per_account=50, hot=40, per_record=25, start=T0 + 100_000)
    publish(producer, settings.raw_topic, second.records)
    total = first.sent + second.sent
    counts = wait_for_counts(settings, total, timeout=150, workers=[a])
    took = time.monotonic() - killed_at
    assert counts == dict(total), "the survivor's state must include the dead worker's"
    alerts = read_topic(endpoints, settings.alerts_topic, count=40, timeout=120)
    alerted = {orjson.loads(r.value)["account_id"] for r in alerts}
    assert alerted == set(first.sent), "the survivor alerts on every partition"
    refilled = metric(a, "intent_stream_records_refilled_total")
    print(
        f"\nrebalance: all 80 accounts' events counted by the survivor {took:.1f}s after "
        f"kill -9; {refilled:.0f} records refilled after a skipped fetch"
    )


def test_a_worker_holds_and_counts_only_the_partitions_it_is_assigned(
    settings, start_worker, producer, tmp_path
):
    # Faust's default standby copy of the other worker's partitions, and the memory store
    # keeping keys a worker wrote to partitions a rebalance took away, each had every worker
    # count (and hold) every account.
    settings = settings.replace(max_clock_skew=0.0)
    n = 200
    first = workload(accounts=n, per_account=10, hot=0, per_record=2)
    a = start_worker(settings.replace(data_dir=str(tmp_path / "a")))
    publish(producer, settings.raw_topic, first.records)
    assert wait_for_counts(settings, first.sent, timeout=120, workers=[a]) == dict(first.sent)
    wait_until(
        lambda: metric(a, "intent_stream_accounts") == n,
        timeout=30,
        what="the only worker counting every account",
    )

    b = start_worker(settings.replace(web_port=free_port(), data_dir=str(tmp_path / "b")))

    def split(name: str) -> tuple[float, float] | None:
        held = metric(a, name), metric(b, name)
        return held if 0 < held[0] < n and 0 < held[1] < n and sum(held) == n else None

    wait_until(lambda: split("intent_stream_accounts"), timeout=90, what="the accounts split")
    # More events for every account, one a record: thousands of changelog messages, more
    # than a standby copy buffers before it applies them; the split holds.
    second = workload(accounts=sorted(first.sent), per_account=30, hot=0, per_record=1,
                      start=T0 + 1_000)  # fmt: skip
    publish(producer, settings.raw_topic, second.records)
    total = first.sent + second.sent
    assert wait_for_counts(settings, total, timeout=120, workers=[a, b]) == dict(total)
    for handle in (a, b):
        wait_until(
            lambda h=handle: metric(h, "intent_stream_records_processed_total") > 0,
            timeout=30,
            what="both workers scoring",
        )
    held = wait_until(
        lambda: split("intent_stream_stage_accounts"), timeout=30, what="the stage counts split"
    )
    assert split("intent_stream_accounts") is not None
    print(f"\nassignment: accounts held {held[0]:.0f} + {held[1]:.0f} = {n}")


def test_visitors_waiting_for_their_account_survive_a_rebalance(
    settings, start_worker, producer, tmp_path
):
    # A worker keeps the pending visitors of the raw partitions it still holds after a
    # rebalance (and drops the others'); the one taking partitions over recovers theirs.
    import uuid

    from intent_stream.pipeline import iso
    from intent_stream.topics import partition_for

    settings = settings.replace(max_clock_skew=0.0)
    tag = uuid.uuid4().hex[:6]
    visitors = [f"c{i}-{tag}" for i in range(40)]

    def page(visitor: str, k: int) -> tuple[bytes, bytes]:
        body = {"type": "page", "anonymousId": visitor, "messageId": f"{visitor}-p{k}",
                "timestamp": iso(T0 + k), "properties": {"path": "/pricing"}}  # fmt: skip
        return visitor.encode(), orjson.dumps(body)

    a = start_worker(settings.replace(data_dir=str(tmp_path / "a")))
    publish(producer, settings.raw_topic, [page(v, k) for v in visitors for k in range(3)])
    wait_until(
        lambda: metric(a, "intent_stream_pending_events_total") == 120,
        timeout=60,
        what="every page waiting for its visitor's account",
    )
    b = start_worker(settings.replace(web_port=free_port(), data_dir=str(tmp_path / "b")))
    # Anonymous pages on every partition, until the second worker reads some: the group
    # has rebalanced.
    warm = {partition_for(f"w{i}-{tag}", settings.partitions): f"w{i}-{tag}" for i in range(200)}
    assert len(warm) == settings.partitions
    rounds = iter(range(1_000))

    def b_reads() -> bool:
        k = next(rounds)
        publish(producer, settings.raw_topic, [page(v, k) for v in warm.values()])
        return metric(b, "intent_stream_ingest_records_total") > 0

    wait_until(b_reads, timeout=90, what="the second worker reading raw partitions", every=1.0)
    # Now each visitor is identified: its pages go to the account with it, whichever
    # worker holds its partition.
    identifies = []
    for i, visitor in enumerate(visitors):
        body = {"type": "identify", "anonymousId": visitor, "userId": f"u{i}-{tag}",
                "messageId": f"{visitor}-id", "timestamp": iso(T0 + 60),
                "traits": {"email": f"ann@w{i}-{tag}.example"}}  # fmt: skip
        identifies.append((visitor.encode(), orjson.dumps(body)))
    publish(producer, settings.raw_topic, identifies)
    expected = Counter({f"w{i}-{tag}.example": 4 for i in range(len(visitors))})
    assert wait_for_counts(settings, expected, timeout=120, workers=[a, b]) == dict(expected)
    for handle in (a, b):
        assert metric(handle, "intent_stream_ingest_records_total") > 0


POISON = [
    b"{not json",
    b"[1, 2, 3]",
    b'"a string"',
    b"\xff\xfe\x00binary",
    orjson.dumps({"type": "page"}),  # no id, no timestamp
    orjson.dumps({"type": "bogus", "userId": "u", "timestamp": "2026-01-01T00:00:00Z"}),
    b"",
]


def test_poison_pills_in_bursts_and_a_kill_mid_burst_dead_letter_all_and_lose_nothing(
    settings, start_worker, producer, endpoints
):
    settings = settings.replace(max_clock_skew=0.0)
    good = workload(accounts=30, per_account=60, hot=0, per_record=20)
    rng = random.Random(7)
    records: list[tuple[bytes, bytes, bool]] = []
    for key, value in good.records:  # scattered: one bad record in five, on average
        records.append((key, value, True))
        if rng.random() < 0.2:
            records.append((b"junk", rng.choice(POISON), False))
    half = len(records) // 2
    burst = [(b"junk", POISON[i % len(POISON)], False) for i in range(600)]
    first, second = records[:half] + burst[:300], burst[300:] + records[half:]

    worker = start_worker(settings)
    sent = publish(producer, settings.raw_topic, [(k, v) for k, v, _ in first])
    bad_at = {(m.partition, m.offset) for m, (_, _, ok) in zip(sent, first, strict=True) if not ok}
    scattered = sum(1 for *_, ok in first if not ok) - 300
    wait_until(
        lambda: metric(worker, "intent_stream_dead_letters_total") >= scattered + 150,
        timeout=120,
        what="half of the burst dead-lettered",
        every=0.05,
    )
    kill9(worker)  # in the middle of the burst
    sent = publish(producer, settings.raw_topic, [(k, v) for k, v, _ in second])
    bad_at |= {
        (m.partition, m.offset) for m, (_, _, ok) in zip(sent, second, strict=True) if not ok
    }
    worker = start_worker(settings)

    counts = wait_for_counts(settings, good.sent, timeout=150, workers=[worker])
    assert counts == dict(good.sent), "no valid event lost or double counted"
    dead = read_topic(endpoints, settings.dlq_topic, count=len(bad_at), timeout=120)
    origins = Counter(
        (int(dict(r.headers)["dlq.partition"]), int(dict(r.headers)["dlq.offset"])) for r in dead
    )
    assert set(origins) == bad_at, "every bad record, and only those, is dead-lettered"
    for record in dead:
        headers = dict(record.headers)
        assert headers["dlq.reason"]
        assert headers["dlq.detail"] is not None
        assert headers["dlq.topic"].decode() == settings.raw_topic
    repeats = sum(n - 1 for n in origins.values())
    print(f"\npoison: {len(bad_at)} bad records, {len(dead)} dead letters "
          f"({repeats} repeated after the kill -9: dead-lettering is at-least-once)")  # fmt: skip
    assert worker.proc.poll() is None
    assert "Traceback" not in worker.log()


def _private_redis(tmp_path: Path, port: int):
    """A Redis of this test's own, with an append-only file so a restart keeps its data."""
    from intent_stream.embedded import _redis_binary

    data = tmp_path / "redis"
    data.mkdir(exist_ok=True)
    argv = [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--dir", str(data)]  # fmt: skip
    proc = spawn_child(argv, log_path=tmp_path / "redis.log")

    def up() -> bool:
        import redis

        client = redis.Redis(port=port, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    wait_until(up, timeout=30, what="the private Redis")
    return proc


def test_a_redis_outage_delays_the_read_model_and_loses_nothing(
    settings, start_worker, producer, endpoints, tmp_path
):
    port = free_port()
    redis_proc = _private_redis(tmp_path, port)
    settings = settings.replace(redis=f"redis://127.0.0.1:{port}/0", max_clock_skew=0.0)
    before = workload(accounts=20, per_account=40, hot=0, per_record=20)
    worker = start_worker(settings)
    try:
        publish(producer, settings.raw_topic, before.records)
        assert wait_for_counts(settings, before.sent, timeout=120) == dict(before.sent)
        lines_before = len(worker.log().splitlines())

        stop_child(redis_proc)
        down_at = time.monotonic()
        during = workload(accounts=10, per_account=40, hot=10, per_record=20)
        publish(producer, settings.raw_topic, during.records)
        # Scoring and alerting go on without Redis.
        alerts = read_topic(
            endpoints,
            settings.alerts_topic,
            count=10,
            timeout=90,
            predicate=lambda r: r.key.decode() in during.sent,
        )
        assert {orjson.loads(r.value)["account_id"] for r in alerts} == set(during.sent)
        wait_until(
            lambda: (
                time.monotonic() - down_at >= 30
                and metric(worker, "intent_stream_redis_errors_total") > 0
                and metric(worker, "intent_stream_dedup_errors_total") > 0
            ),
            timeout=90,
            what="30 s of outage, seen by the read model and the dedup",
            every=0.5,
        )
        outage = time.monotonic() - down_at
        redis_proc = _private_redis(tmp_path, port)
        back_at = time.monotonic()
        total = before.sent + during.sent
        counts = wait_for_counts(settings, total, timeout=120)
        caught_up = time.monotonic() - back_at
        assert counts == dict(total), "the read model caught up, nothing lost or doubled"
        assert account_counts(settings, sorted(before.sent)) == dict(before.sent)
        new_lines = worker.log().splitlines()[lines_before:]
        print(f"\nredis outage: {outage:.0f}s down, read model caught up {caught_up:.1f}s after "
              f"Redis returned; {len(new_lines)} log lines meanwhile")  # fmt: skip
        assert len(new_lines) < 30, "no error storm:\n" + "\n".join(new_lines[:40])
        assert worker.proc.poll() is None
    finally:
        stop_child(redis_proc)
