"""The raw topic through a real worker: validation, dead letters, identity, de-duplication."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid

import orjson
import pytest
import redis
from kafka import KafkaConsumer

from intent_stream.readmodel import account_key, identity_key
from intent_stream.topics import partition_for

from .conftest import read_topic, settings_env, wait_until

pytestmark = pytest.mark.integration

T0 = 1_795_000_000_000  # event time of the scenario (Nov 2026), epoch milliseconds


def _send_raw(producer, settings, key: str, value: bytes) -> None:
    producer.send(
        settings.raw_topic,
        key=key.encode(),
        value=value,
        partition=partition_for(key, settings.partitions),
    )


def _forwarded(endpoints, settings, *, count: int, timeout: float = 60) -> list[dict]:
    """The events forwarded to the account-keyed topic, once ``count`` of them have arrived."""
    consumer = KafkaConsumer(
        settings.events_topic,
        bootstrap_servers=endpoints.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    events: list[dict] = []
    try:

        def enough() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                events.extend(e for r in records for e in orjson.loads(r.value)["batch"])
            return len(events) >= count

        wait_until(enough, timeout=timeout, what=f"{count} forwarded events", every=0.01)
        # Anything more than expected would arrive right behind: give it a moment to show.
        for records in consumer.poll(timeout_ms=1000).values():
            events.extend(e for r in records for e in orjson.loads(r.value)["batch"])
    finally:
        consumer.close()
    return events


def test_anonymous_visits_are_attributed_once_the_visitor_is_identified(
    settings, start_worker, producer, endpoints
):
    start_worker(settings)
    tag = uuid.uuid4().hex[:6]
    account, cookie = f"acme-{tag}.com", f"c-{tag}"
    pages = [
        {
            "type": "page",
            "anonymousId": cookie,
            "messageId": f"{tag}-p{i}",
            "timestamp": T0 + i * 60_000,
            "properties": {"path": path},
        }
        for i, path in enumerate(["/blog/x", "/product", "/pricing"])
    ]
    for page in pages:
        _send_raw(producer, settings, cookie, orjson.dumps(page))
    identify = {
        "type": "identify",
        "anonymousId": cookie,
        "userId": f"u-{tag}",
        "messageId": f"{tag}-id",
        "timestamp": T0 + 600_000,
        "traits": {"email": f"Ann@{account.upper()}", "role": "engineering"},
    }
    # Later activity from a server-side source knows only the userId.
    server = {
        "type": "track",
        "userId": f"u-{tag}",
        "event": "Demo Requested",
        "messageId": f"{tag}-demo",
        "originalTimestamp": "2026-11-19T10:00:00.000Z",
        "sentAt": "2026-11-19T10:00:05.000Z",
    }
    _send_raw(producer, settings, cookie, orjson.dumps({"batch": [identify]}))
    _send_raw(producer, settings, f"u-{tag}", orjson.dumps(server))
    producer.flush()

    events = _forwarded(endpoints, settings, count=5)
    assert {e["context"]["groupId"] for e in events} == {account}
    assert sorted(e["messageId"] for e in events) == sorted(
        [p["messageId"] for p in pages] + [identify["messageId"], server["messageId"]]
    )
    assert next(e for e in events if e["type"] == "identify")["traits"]["email"] == (
        f"ann@{account}"
    )

    client = redis.Redis.from_url(settings.redis)
    try:

        def scored() -> dict | None:
            raw = client.get(account_key(settings.redis_prefix, account))
            snapshot = orjson.loads(raw) if raw else None
            return snapshot if snapshot and snapshot["events"] == 5 else None

        wait_until(scored, timeout=30, what="the account's snapshot with 5 events")
        node = orjson.loads(client.get(identity_key(settings.redis_prefix, f"anon:{cookie}")))
        assert node["account"] is None  # the cookie belongs to the person ...
        person = orjson.loads(client.get(identity_key(settings.redis_prefix, f"user:u-{tag}")))
        assert (person["account"], person["via"]) == (account, "email_domain")
        assert person["cookies"] == [f"anon:{cookie}"]
    finally:
        client.close()

    def show(value: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "intent_stream", "identity", "show", value, "--json"],
            env={**os.environ, **settings_env(settings)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    person_view = orjson.loads(show(f"u-{tag}").stdout)
    assert person_view["nodes"][0]["account"] == account
    account_view = orjson.loads(show(account).stdout)
    assert {m["node"] for m in account_view["members"]} == {f"user:u-{tag}"}
    assert show("nobody-at-all").returncode == 1


def _fuzz(rng: random.Random) -> bytes:
    """A bad raw record: broken bytes, wrong shapes, wrong types, missing or huge fields."""
    choice = rng.randrange(9)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if choice == 1:
        return b'{"type": "page", "anonymousId": "x", "timestamp": ' + b"9" * 400 + b"}"
    if choice == 2:
        return orjson.dumps(rng.choice([42, "text", None, True, [1, 2], {"batch": "x"}]))
    if choice == 3:
        return orjson.dumps({"type": rng.choice(["click", 7, None]), "userId": "u"})
    if choice == 4:
        return orjson.dumps({"type": "track", "event": "X", "timestamp": T0})  # no id
    if choice == 5:
        return orjson.dumps({"type": "track", "userId": "u", "event": "x" * 5000})
    if choice == 6:
        return orjson.dumps({"type": "page", "userId": ["u"], "timestamp": T0})
    if choice == 7:
        return orjson.dumps({"type": "page", "userId": "u", "timestamp": "yesterday"})
    return orjson.dumps({"type": "page", "userId": "u", "context": "not-an-object"})


def test_bad_messages_go_to_the_dead_letter_topic_and_valid_ones_behind_them_arrive(
    settings, start_worker, producer, endpoints
):
    worker = start_worker(settings)
    rng = random.Random(7)
    tag = uuid.uuid4().hex[:6]
    account = f"fuzz-{tag}.example"
    valid, bad = 0, 0
    for i in range(300):
        if rng.random() < 0.5:
            event = {
                "type": "track",
                "event": "Pricing Viewed",
                "userId": f"u{i % 7}",
                "messageId": f"{tag}-{i}",
                "timestamp": T0 + i * 1000,
                "context": {"groupId": account},
            }
            _send_raw(producer, settings, f"u{i % 7}", orjson.dumps(event))
            valid += 1
        else:
            _send_raw(producer, settings, f"bad{i}", _fuzz(rng))
            bad += 1
    producer.flush()

    events = _forwarded(endpoints, settings, count=valid)
    assert len({e["messageId"] for e in events}) == valid
    letters = read_topic(endpoints, settings.dlq_topic, count=bad, timeout=30)
    # An array of several non-events dead-letters each item: count the records they came from.
    origins = {(dict(r.headers)["dlq.partition"], dict(r.headers)["dlq.offset"]) for r in letters}
    assert len(origins) == bad
    reasons = {dict(r.headers)["dlq.reason"].decode() for r in letters}
    assert reasons <= {
        "invalid_json",
        "not_an_event",
        "invalid_batch",
        "bad_type",
        "missing_id",
        "bad_field",
        "bad_timestamp",
    }
    assert all(dict(r.headers)["dlq.topic"] == settings.raw_topic.encode() for r in letters)
    assert worker.proc.poll() is None
    metrics = worker.metrics()
    assert f'intent_stream_ingest_messages_total{{type="track"}} {float(valid)}' in metrics


def test_a_repeated_message_id_is_forwarded_once(settings, start_worker, producer, endpoints):
    start_worker(settings)
    tag = uuid.uuid4().hex[:6]
    account = f"dup-{tag}.example"
    event = {
        "type": "page",
        "userId": "u1",
        "messageId": f"{tag}-m1",
        "timestamp": T0,
        "context": {"groupId": account},
        "properties": {"path": "/pricing"},
    }
    other = {**event, "messageId": f"{tag}-m2"}
    # The same message retried by a tracker, in another record and on another key.
    _send_raw(producer, settings, "k1", orjson.dumps(event))
    _send_raw(producer, settings, "k2", orjson.dumps([event, other]))
    producer.flush()
    events = _forwarded(endpoints, settings, count=2)
    assert sorted(e["messageId"] for e in events) == [f"{tag}-m1", f"{tag}-m2"]


def test_unreadable_identity_edges_are_skipped_and_ingest_still_starts(
    settings, start_worker, producer, endpoints
):
    from intent_stream.topics import ensure_topics

    ensure_topics(settings)
    # Records no worker wrote (the identity topic is internal, but anyone may write to it).
    for key, value in ((b"person|anon:x", b"not json"), (b"\xff", None), (b"p|n", b"[1]")):
        producer.send(settings.identity_topic, key=key, value=value, partition=0)
    producer.flush()
    worker = start_worker(settings)
    tag = uuid.uuid4().hex[:6]
    event = {
        "type": "page",
        "userId": f"u-{tag}",
        "messageId": f"{tag}-1",
        "timestamp": T0,
        "context": {"groupId": f"edges-{tag}.example"},
    }
    _send_raw(producer, settings, f"u-{tag}", orjson.dumps(event))
    producer.flush()
    (forwarded,) = _forwarded(endpoints, settings, count=1)
    assert forwarded["messageId"] == f"{tag}-1"
    assert worker.log().count("skipping an unreadable identity edge") == 3
