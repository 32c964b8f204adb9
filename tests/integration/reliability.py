"""Workloads and checks shared by the reliability tests (not a test module)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from intent_stream.pipeline import INTENT_RULE, iso
from intent_stream.readmodel import account_key
from intent_stream.scoring import alert_id
from intent_stream.settings import Settings

from .conftest import WorkerHandle, wait_until
from .test_worker import _samples

T0 = 1_795_000_000.0


@dataclass
class Workload:
    """Keyed events with unique messageIds, in raw records, and what they must produce."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value)
    sent: Counter[str] = field(default_factory=Counter)  # account -> events
    hot: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(self.sent.values())

    def alert_ids(self) -> set[str]:
        return {alert_id(a, INTENT_RULE, 1) for a in self.hot}


def _hot_events(account: str) -> Iterator[dict[str, Any]]:
    """Five senior people from one account research pricing and ask for a demo and a trial."""
    for i in range(5):
        base = {"userId": f"{account}-p{i}", "context": {"groupId": account}}
        yield {**base, "type": "identify", "traits": {"seniority": "director"}, "t": i}
        for j, path in enumerate(["/product", "/pricing", "/compare/x-vs-y", "/pricing"]):
            yield {**base, "type": "page", "properties": {"path": path}, "t": 60 * i + j}
    for n, name in ((0, "Demo Requested"), (1, "Trial Started")):
        yield {
            "type": "track",
            "event": name,
            "userId": f"{account}-p{n}",
            "context": {"groupId": account},
            "t": 600 + n,
        }


def workload(
    *,
    accounts: int | list[str],
    per_account: int,
    hot: int,
    per_record: int,
    start: float = T0,
) -> Workload:
    """``accounts`` (new names, or the given ones) x ``per_account`` events (the first ``hot``
    accounts alert once), in records of ``per_record`` events of one account, interleaved.
    Every call gives its events new messageIds."""
    tag = uuid.uuid4().hex[:6]
    if isinstance(accounts, int):
        names = [f"a{i}-{tag}.example" for i in range(accounts)]
    else:
        names = list(accounts)
    out = Workload(hot=names[:hot])
    per: dict[str, list[dict[str, Any]]] = {}
    for index, account in enumerate(names):
        events = list(_hot_events(account)) if index < hot else []
        while len(events) < per_account:
            k = len(events)
            events.append(
                {
                    "type": "page",
                    "userId": f"{account}-p{k % 3}",
                    "context": {"groupId": account},
                    "properties": {"path": "/blog/post"},
                    "t": 700 + k,
                }
            )
        for k, event in enumerate(events):
            event["messageId"] = f"{account}-{tag}-m{k}"
            event["timestamp"] = iso(start + event.pop("t"))
        per[account] = events
        out.sent[account] = len(events)
    chunks = {
        a: [e[i : i + per_record] for i in range(0, len(e), per_record)] for a, e in per.items()
    }
    while any(chunks.values()):
        for account in names:
            if chunks[account]:
                out.records.append((account.encode(), orjson.dumps(chunks[account].pop(0))))
    return out


def publish(producer: Any, topic: str, records: list[tuple[bytes, bytes]]) -> list[Any]:
    """Send and wait for every record; return their (partition, offset) metadata."""
    futures = [producer.send(topic, key=key, value=value) for key, value in records]
    producer.flush()
    return [f.get(timeout=30) for f in futures]


def metric(handle: WorkerHandle, name: str) -> float:
    """Sum of a metric's samples (all label values) on a worker; 0 if it cannot answer."""
    try:
        samples = _samples(handle.metrics())
    except OSError:
        return 0.0
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def kill9(handle: WorkerHandle) -> None:
    os.kill(handle.proc.pid, signal.SIGKILL)
    handle.proc.wait(timeout=10)


def account_counts(settings: Settings, accounts: list[str]) -> dict[str, int]:
    """Each account's events count in its Redis snapshot (missing accounts: absent)."""
    client = redis.Redis.from_url(settings.redis, socket_timeout=2)
    try:
        raw = client.mget([account_key(settings.redis_prefix, a) for a in accounts])
    finally:
        client.close()
    return {a: orjson.loads(v)["events"] for a, v in zip(accounts, raw, strict=True) if v}


def dump_tasks(handles: list[WorkerHandle]) -> None:
    """Ask each live worker to log its threads' stacks and asyncio tasks (SIGUSR1: mode's
    worker writes them to its log), for the diagnosis of a test that failed."""
    for handle in handles:
        if handle.proc.poll() is None:
            os.kill(handle.proc.pid, signal.SIGUSR1)
    time.sleep(2)


def wait_for_counts(
    settings: Settings,
    sent: Counter[str],
    *,
    timeout: float,
    workers: list[WorkerHandle] | None = None,
) -> dict[str, int]:
    """Wait until every account's snapshot reached what was sent; return the snapshot counts
    (the caller asserts they are exact: an inflated count also ends the wait). On a timeout,
    ``workers`` log their tasks (:func:`dump_tasks`) and the error says what the topics hold."""
    accounts = sorted(sent)

    def reached() -> dict[str, int] | None:
        counts = account_counts(settings, accounts)
        done = len(counts) == len(accounts) and all(counts[a] >= sent[a] for a in accounts)
        return counts if done else None

    try:
        return wait_until(reached, timeout=timeout, what="every account's events", every=0.5)
    except AssertionError:
        dump_tasks(workers or [])
        counts = account_counts(settings, accounts)
        short = {a: (counts.get(a), sent[a]) for a in accounts if counts.get(a) != sent[a]}
        raise AssertionError(
            f"{len(short)} account(s) (got, sent) differ: {short}\n"
            + explain(settings, sorted(short)[:2])
        ) from None


def _read_all(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic``, from the beginning (until a second passes without one)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka, group_id=None, enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        idle = time.monotonic()
        while time.monotonic() - idle < 1.0:
            batches = consumer.poll(timeout_ms=200, max_records=100_000)
            if batches:
                idle = time.monotonic()
            for batch in batches.values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def explain(settings: Settings, accounts: list[str]) -> str:
    """What the topics say about ``accounts`` (a failing test's diagnosis): their records on
    the account-keyed topic (with the raw record each came from) and their changelog entries
    (events counted, replay-guard offsets), plus the group's committed offsets."""
    from kafka.admin import KafkaAdminClient

    from intent_stream.topics import ACCOUNT_STATE_TABLE

    lines = []
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka)
        try:
            committed = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
        finally:
            admin.close()
        lines.append(
            "committed: "
            + ", ".join(f"{tp.topic}[{tp.partition}]={om.offset}" for tp, om in committed.items())
        )
        changelog = f"{settings.app_id}-{ACCOUNT_STATE_TABLE}-changelog"
        for topic in (settings.raw_topic, settings.events_topic, changelog):
            records = _read_all(settings, topic)
            ends = {}
            for r in records:
                ends[r.partition] = r.offset + 1
            lines.append(f"{topic}: {len(records)} records, log ends {ends}")
            for account in accounts if topic != settings.raw_topic else []:
                for r in records:
                    if account not in (r.key or b"").decode(errors="replace"):
                        continue
                    value = orjson.loads(r.value)
                    what = (
                        f"src={value.get('src')} events={len(value.get('batch', []))}"
                        if topic == settings.events_topic
                        else f"events={value.get('events')} off={value.get('off')}"
                    )
                    lines.append(f"  {account} [{r.partition}]@{r.offset} t={r.timestamp} {what}")
    except Exception as exc:  # a diagnosis must not hide the failure it explains
        lines.append(f"(diagnosis failed: {exc!r})")
    return "\n".join(lines)


def restart_to_processing(start: Any, settings: Settings) -> tuple[WorkerHandle, float]:
    """Start a worker and measure the seconds until it has processed a record."""
    began = time.monotonic()
    handle = start(settings)

    def processing() -> bool:
        return (
            metric(handle, "intent_stream_records_processed_total") > 0
            or metric(handle, "intent_stream_ingest_records_total") > 0
        )

    wait_until(processing, timeout=120, what="the restarted worker processing", every=0.2)
    return handle, time.monotonic() - began
