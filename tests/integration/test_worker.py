"""The thin path end to end: events on Kafka -> a real worker -> alert topic, Redis, /metrics."""

from __future__ import annotations

import os
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
import redis

from intent_stream.readmodel import account_key, by_score_key
from intent_stream.topics import partition_for

from .conftest import read_topic, wait_until

pytestmark = pytest.mark.integration

T0 = 1_795_000_000.0  # event time of the scenario (Nov 2026), in epoch seconds


def _ts(offset_s: float) -> str:
    from intent_stream.pipeline import iso

    return iso(T0 + offset_s)


def _hot_batch(account: str) -> list[dict]:
    """Five people from one account research pricing, compare, ask for a demo and a trial."""
    events: list[dict] = []
    for i in range(5):
        person = f"{account}-p{i}"
        base = {"userId": person, "context": {"groupId": account}}
        events.append(
            {
                **base,
                "type": "identify",
                "timestamp": _ts(i),
                "traits": {"role": "engineering", "seniority": "director"},
            }
        )
        for j, path in enumerate(["/product", "/pricing", "/compare/acme-vs-x", "/pricing"]):
            events.append(
                {**base, "type": "page", "timestamp": _ts(60 * i + j), "properties": {"path": path}}
            )
    events.append(
        {
            "type": "track",
            "event": "Demo Requested",
            "userId": f"{account}-p0",
            "timestamp": _ts(600),
            "context": {"groupId": account},
        }
    )
    events.append(
        {
            "type": "track",
            "event": "Trial Started",
            "userId": f"{account}-p1",
            "timestamp": _ts(700),
            "context": {"groupId": account},
        }
    )
    return events


def test_events_flow_to_alert_redis_and_metrics(settings, start_worker, producer, endpoints):
    worker = start_worker(settings)
    tag = uuid.uuid4().hex[:6]
    hot, cold = f"hot-{tag}.example", f"cold-{tag}.example"
    hot_events = _hot_batch(hot)
    cold_event = {
        "type": "page",
        "anonymousId": "c1",
        "timestamp": _ts(5),
        "context": {"groupId": cold},
        "properties": {"path": "/blog/hello"},
    }
    topic = settings.events_topic

    producer.send(topic, key=hot.encode(), value=orjson.dumps(hot_events))
    producer.send(topic, key=cold.encode(), value=orjson.dumps(cold_event))
    producer.send(topic, key=b"junk", value=b"{not json")
    bad_event = {"type": "page", "timestamp": _ts(9), "context": {"groupId": cold}}  # no id
    producer.send(
        topic, key=cold.encode(), value=orjson.dumps([cold_event | {"messageId": "2"}, bad_event])
    )
    producer.flush()

    alerts = read_topic(endpoints, settings.alerts_topic, count=1, timeout=60)
    alert = orjson.loads(alerts[0].value)
    assert alerts[0].key == hot.encode()
    assert alert["account_id"] == hot
    assert alert["intent_score"] >= settings.alert_enter
    assert alert["reasons"], "an alert must say why"
    assert all(isinstance(r, str) and r for r in alert["reasons"])
    assert dict(alerts[0].headers)["alert_id"].decode() == alert["alert_id"]

    dead = read_topic(endpoints, settings.dlq_topic, count=2, timeout=30)
    reasons = sorted(dict(r.headers)["dlq.reason"].decode() for r in dead)
    assert reasons == ["invalid_json", "missing_id"]
    junk = next(r for r in dead if dict(r.headers)["dlq.reason"] == b"invalid_json")
    assert junk.value == b"{not json"  # the raw bytes, unchanged
    assert dict(junk.headers)["dlq.topic"].decode() == topic

    client = redis.Redis.from_url(settings.redis)
    try:

        def snapshots():
            raw = [client.get(account_key(settings.redis_prefix, a)) for a in (hot, cold)]
            return raw if all(raw) else None

        hot_raw, cold_raw = wait_until(snapshots, timeout=30, what="both accounts in Redis")
        hot_snap, cold_snap = orjson.loads(hot_raw), orjson.loads(cold_raw)
        assert hot_snap["events"] == len(hot_events)
        assert cold_snap["events"] == 2
        assert hot_snap["intent_score"] > cold_snap["intent_score"]
        assert hot_snap["reasons"]
        ranked = client.zrevrange(by_score_key(settings.redis_prefix), 0, -1)
        assert ranked[0] == hot.encode()
    finally:
        client.close()

    def counted() -> str | None:
        text = worker.metrics()
        return text if "intent_stream_dead_letters_total" in text else None

    text = wait_until(counted, timeout=10, what="metrics")
    values = _samples(text)
    assert values['intent_stream_alerts_published_total{rule="intent_threshold"}'] == 1.0
    processed = sum(
        v for k, v in values.items() if k.startswith("intent_stream_events_processed_total{")
    )
    assert processed == len(hot_events) + 2
    assert values['intent_stream_dead_letters_total{reason="invalid_json"}'] == 1.0
    # ?name[]= narrows the page to the samples asked for (what a poller needs).
    query = "name[]=intent_stream_dead_letters_total&name[]=intent_stream_records_processed_total"
    with urllib.request.urlopen(f"{worker.metrics_url}?{query}", timeout=2) as response:
        narrow = _samples(response.read().decode())
    assert {k.partition("{")[0] for k in narrow} == {
        "intent_stream_dead_letters_total",
        "intent_stream_records_processed_total",
    }
    assert narrow['intent_stream_dead_letters_total{reason="invalid_json"}'] == 1.0


def test_a_hot_account_is_alerted_once_within_its_cooldown(
    settings, start_worker, producer, endpoints
):
    start_worker(settings)
    account = f"repeat-{uuid.uuid4().hex[:6]}.example"
    batch = _hot_batch(account)
    for _ in range(3):  # more evidence, still one alert: the policy is disarmed
        producer.send(settings.events_topic, key=account.encode(), value=orjson.dumps(batch))
    marker = f"marker-{uuid.uuid4().hex[:6]}.example"
    marker_batch = orjson.dumps(_hot_batch(marker))
    # In the account's partition, so that the worker applies it after the account's records.
    partition = partition_for(account, settings.partitions)
    producer.send(
        settings.events_topic, key=marker.encode(), value=marker_batch, partition=partition
    )
    producer.flush()
    # The marker's alert is produced after every alert of the account's three records (same
    # partition, applied in order); reading until both arrived (and then until the topic has
    # been quiet for a moment) and checking the count bounds the wait deterministically.
    alerts = read_topic(endpoints, settings.alerts_topic, count=2, timeout=60)
    accounts = [orjson.loads(r.value)["account_id"] for r in alerts]
    assert sorted(accounts) == sorted([account, marker])


def test_nothing_listens_beyond_loopback(settings, start_worker, stack):
    worker = start_worker(settings)
    pids = [worker.proc.pid, *stack.pids()]
    for pid in pids:
        addresses = _listening_addresses(pid)
        assert addresses, f"found no listening socket of pid {pid}: the check would be empty"
        for address in addresses:
            assert address in {"127.0.0.1", "::1"}, f"pid {pid} listens on {address}"


def _samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _listening_addresses(pid: int) -> set[str]:
    """Addresses the process's TCP sockets listen on, read from /proc (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found: set[str] = set()
    for table, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:  # 0A = LISTEN
                found.add(_decode_address(local.split(":")[0], size))
    return found


def _decode_address(hexaddr: str, size: int) -> str:
    import ipaddress

    raw = bytes.fromhex(hexaddr)
    if size == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)
