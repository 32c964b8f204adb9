"""The HTTP collector as a real process (and inside a worker) against the embedded broker."""

from __future__ import annotations

import base64
import gzip
import json
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from intent_stream.client import visitor_key
from intent_stream.embedded import (
    EmbeddedEndpoints,
    EmbeddedStack,
    free_port,
    spawn_child,
    stop_child,
)
from intent_stream.settings import Settings
from intent_stream.topics import ensure_topics, partition_for

from .conftest import read_topic, settings_env, wait_until

pytestmark = pytest.mark.integration

WRITE_KEY = "wk_it_collector"
OTHER_KEY = "wk_it_second"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict


def post(
    url: str,
    body: bytes | dict,
    *,
    key: str | None = WRITE_KEY,
    headers: dict[str, str] | None = None,
) -> Answer:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        )
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, dict(response.headers), json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), json.loads(exc.read()))


def private(settings: Settings, **changes) -> Settings:
    """The test's settings with its own raw and identity topics and a collector."""
    tag = uuid.uuid4().hex[:8]
    return settings.replace(
        raw_topic=f"it.{tag}.raw.v1",
        identity_topic=f"it.{tag}.identity.v1",
        write_keys=f"{WRITE_KEY},{OTHER_KEY}",
        collector_port=free_port(),
        **changes,
    )


@dataclass
class CollectorProcess:
    settings: Settings
    proc: object
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.settings.collector_port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[Callable[[Settings], CollectorProcess]]:
    """``intent-stream collector`` as a real process; waits until /healthz answers."""
    started: list[CollectorProcess] = []

    def start(settings: Settings) -> CollectorProcess:
        log_path = tmp_path / f"collector-{len(started)}.log"
        proc = spawn_child(
            [sys.executable, "-m", "intent_stream", "collector"],
            env=settings_env(settings),
            log_path=log_path,
        )
        handle = CollectorProcess(settings, proc, log_path)
        started.append(handle)

        def healthy() -> bool:
            assert proc.poll() is None, f"collector exited early:\n{handle.log()[-3000:]}"
            try:
                with urllib.request.urlopen(handle.url("/healthz"), timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(healthy, timeout=60, what="the collector's /healthz")
        return handle

    yield start
    for handle in started:
        stop_child(handle.proc, timeout=20)
        assert handle.proc.returncode == 0, (
            f"collector did not stop cleanly:\n{handle.log()[-3000:]}"
        )


def raw_messages(endpoints: EmbeddedEndpoints, topic: str, *, count: int, timeout: float = 20):
    """(record, message) pairs read from the raw topic until ``count`` messages arrived."""
    found: list = []

    def completes(record) -> bool:
        found.extend((record, m) for m in orjson.loads(record.value)["batch"])
        return len(found) >= count

    read_topic(endpoints, topic, count=1, timeout=timeout, predicate=completes)
    return found


def _track(visitor: str, message_id: str, **extra) -> dict:
    return {
        "type": "track",
        "event": "Demo Requested",
        "anonymousId": visitor,
        "messageId": message_id,
        "context": {"groupId": "acme.example"},
        **extra,
    }


def test_track_is_acknowledged_only_once_readable_on_the_raw_topic(
    settings, start_collector, endpoints
):
    collector = start_collector(private(settings))
    visitor = f"v-{uuid.uuid4().hex[:6]}"
    sent = _track(visitor, "m-1", originalTimestamp="2026-01-01T00:00:00.000Z")
    answer = post(collector.url("/v1/track"), sent)
    assert (answer.status, answer.body) == (200, {"success": True})
    # The 200 came after the broker's ack: the record is there now, with no producer to wait for.
    ((record, message),) = raw_messages(endpoints, collector.settings.raw_topic, count=1, timeout=5)
    assert record.key == visitor.encode()
    assert record.partition == partition_for(visitor, settings.partitions)
    assert message["messageId"] == "m-1"
    assert message["originalTimestamp"] == "2026-01-01T00:00:00.000Z"  # untouched
    assert message["receivedAt"].endswith("Z")
    assert message["event"] == "Demo Requested"


def test_single_message_endpoints_set_the_type_and_stamp_a_message_id(
    settings, start_collector, endpoints
):
    collector = start_collector(private(settings))
    calls = {
        "identify": {"userId": "u-1", "traits": {"email": "ada@acme.example"}},
        "page": {"anonymousId": "a-1", "properties": {"path": "/pricing"}},
        "screen": {"anonymousId": "a-1", "name": "Pricing"},
        "group": {"userId": "u-1", "groupId": "acme.example"},
        "alias": {"userId": "u-1", "previousId": "a-1"},
    }
    for endpoint, body in calls.items():
        answer = post(collector.url(f"/v1/{endpoint}"), body)
        assert answer.status == 200, (endpoint, answer.body)
    found = raw_messages(endpoints, collector.settings.raw_topic, count=len(calls))
    assert sorted(m["type"] for _, m in found) == sorted(calls)
    assert all(len(m["messageId"]) == 36 for _, m in found)


def test_a_type_that_contradicts_the_path_is_refused(settings, start_collector):
    collector = start_collector(private(settings))
    answer = post(collector.url("/v1/track"), {"type": "page", "anonymousId": "a"})
    assert answer.status == 400
    assert (answer.body["reason"], answer.body["field"]) == ("bad_type", "type")


def test_write_key_is_required(settings, start_collector, endpoints):
    collector = start_collector(private(settings))
    url = collector.url("/v1/track")
    visitor = f"v-{uuid.uuid4().hex[:6]}"
    for key in (None, "wk_wrong", ""):
        answer = post(url, _track(visitor, f"refused-{key}"), key=key)
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
        assert "error" in answer.body
    assert post(url, _track(visitor, "accepted-2"), key=OTHER_KEY).status == 200
    # Same visitor, same partition, in order: had a refused one been written, it would be here.
    found = raw_messages(endpoints, collector.settings.raw_topic, count=1)
    assert [m["messageId"] for _, m in found] == ["accepted-2"]
    assert WRITE_KEY not in collector.log()
    assert OTHER_KEY not in collector.log()


def test_bodies_over_the_limit_are_refused_with_413(settings, start_collector):
    collector = start_collector(private(settings, max_body_bytes=4096))
    url = collector.url("/v1/batch")
    big = {"batch": [_track("a", f"m{i}") for i in range(100)]}
    answer = post(url, big)
    assert answer.status == 413
    assert answer.body["reason"] == "too_large"
    # Small on the wire, too large once inflated: refused as well.
    answer = post(url, gzip.compress(orjson.dumps(big)), headers={"Content-Encoding": "gzip"})
    assert answer.status == 413


def test_a_bad_message_refuses_the_request_names_the_field_and_dead_letters_the_body(
    settings, start_collector, endpoints
):
    collector = start_collector(private(settings))
    visitor = f"v-{uuid.uuid4().hex[:6]}"
    bad = orjson.dumps(
        {"batch": [_track(visitor, "ok-0"), {"type": "track", "anonymousId": visitor}]}
    )
    answer = post(collector.url("/v1/batch"), bad)
    assert answer.status == 400
    assert answer.body["reason"] == "bad_field"
    assert answer.body["field"] == "event"
    assert answer.body["index"] == 1
    assert "event" in answer.body["error"]

    (dead,) = read_topic(endpoints, settings.dlq_topic, count=1, timeout=20)
    assert dead.value == bad
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["dlq.reason"] == "bad_field"
    assert headers["dlq.topic"] == "http:/v1/batch"
    assert (headers["dlq.partition"], headers["dlq.offset"]) == ("-1", "-1")
    assert "event" in headers["dlq.detail"]

    # The valid first message was not written either: the whole request was refused.
    assert post(collector.url("/v1/track"), _track(visitor, "after")).status == 200
    found = raw_messages(endpoints, collector.settings.raw_topic, count=1)
    assert [m["messageId"] for _, m in found] == ["after"]


def test_invalid_json_is_a_400_and_a_dead_letter(settings, start_collector, endpoints):
    collector = start_collector(private(settings))
    answer = post(collector.url("/v1/batch"), b'{"batch": [')
    assert (answer.status, answer.body["reason"]) == (400, "invalid_json")
    (dead,) = read_topic(endpoints, settings.dlq_topic, count=1, timeout=20)
    assert dead.value == b'{"batch": ['


def test_batch_across_visitors_lands_as_one_record_per_partition(
    settings, start_collector, endpoints
):
    collector = start_collector(private(settings))
    visitors = [f"v{i}-{uuid.uuid4().hex[:4]}" for i in range(40)]
    messages = [
        {"type": "page", "anonymousId": visitors[i % 40], "properties": {"n": i}}
        for i in range(300)
    ]
    body = {
        "batch": messages,
        "context": {"library": {"name": "batch-sdk"}, "ip": "192.0.2.1"},
        "sentAt": "2026-01-01T00:00:10.000Z",
    }
    answer = post(collector.url("/v1/batch"), body)
    assert answer.status == 200, answer.body
    found = raw_messages(endpoints, collector.settings.raw_topic, count=300)
    assert sorted(m["properties"]["n"] for _, m in found) == list(range(300))
    records = {(r.partition, r.offset): r for r, _ in found}
    expected = {partition_for(v, settings.partitions) for v in visitors}
    assert sorted(p for p, _ in records) == sorted(expected)  # one record per partition
    for (partition, _), record in records.items():
        batch = orjson.loads(record.value)["batch"]
        assert {partition_for(visitor_key(m), settings.partitions) for m in batch} == {partition}
        ns = [m["properties"]["n"] for m in batch]
        assert ns == sorted(ns)
    for _, message in found:
        assert message["context"] == {"library": {"name": "batch-sdk"}, "ip": "192.0.2.1"}
        assert message["sentAt"] == "2026-01-01T00:00:10.000Z"
    assert len({m["receivedAt"] for _, m in found}) == 1  # one request, one arrival time


def test_gzip_bodies_are_accepted(settings, start_collector, endpoints):
    collector = start_collector(private(settings))
    body = {"batch": [_track("gz", f"gz-{i}") for i in range(20)]}
    answer = post(
        collector.url("/v1/batch"),
        gzip.compress(orjson.dumps(body)),
        headers={"Content-Encoding": "gzip"},
    )
    assert answer.status == 200, answer.body
    found = raw_messages(endpoints, collector.settings.raw_topic, count=20)
    assert [m["messageId"] for _, m in found] == [f"gz-{i}" for i in range(20)]


def test_metrics_count_requests_by_endpoint_and_status(settings, start_collector):
    collector = start_collector(private(settings))
    assert post(collector.url("/v1/page"), {"anonymousId": "a"}).status == 200
    assert post(collector.url("/v1/page"), {"anonymousId": "a"}, key="nope").status == 401
    with urllib.request.urlopen(collector.url("/metrics"), timeout=5) as r:
        text = r.read().decode()
    assert 'intent_stream_collector_requests_total{endpoint="page",status="200"} 1.0' in text
    assert 'intent_stream_collector_requests_total{endpoint="page",status="401"} 1.0' in text
    assert 'intent_stream_collector_events_total{type="page"} 1.0' in text
    assert "intent_stream_collector_request_latency_seconds_count 2.0" in text


def test_an_unavailable_broker_gives_503_never_200(settings, start_collector, tmp_path):
    # A broker of our own, so stopping it harms no other test.
    workdir = tmp_path / "own-broker"
    workdir.mkdir()
    own = EmbeddedStack(redis=False, workdir=workdir)
    own_endpoints = own.start()
    try:
        mine = private(settings, kafka=own_endpoints.kafka_bootstrap)
        ensure_topics(mine)
        collector = start_collector(mine)
        assert post(collector.url("/v1/track"), _track("a", "before")).status == 200
        own.stop()
        answer = post(collector.url("/v1/track"), _track("a", "during"))
        assert answer.status == 503
        assert answer.body["reason"] == "unavailable"
        assert answer.headers["Retry-After"] == "1"
    finally:
        own.stop()


def test_the_segment_python_sdk_works_unchanged(settings, start_collector, endpoints):
    from segment.analytics import Client

    collector = start_collector(private(settings))
    errors: list = []
    sdk = Client(
        write_key=WRITE_KEY,
        host=collector.url(""),
        on_error=lambda error, batch: errors.append(error),
        gzip=True,
        max_retries=1,
    )
    ids = []
    for ok, msg in (
        sdk.identify("u-42", {"email": "ada@acme.example", "company": {"name": "Acme"}}),
        sdk.track("u-42", "Demo Requested", {"plan": "team"}, context={"groupId": "acme.example"}),
        sdk.page("u-42", "Docs", "Pricing", {"path": "/pricing"}),
        sdk.group("u-42", "acme.example", {"name": "Acme", "employees": 120}),
        sdk.alias("anon-7", "u-42"),
    ):
        assert ok
        ids.append(msg["messageId"])
    sdk.flush()
    sdk.join()
    assert errors == []
    found = raw_messages(endpoints, collector.settings.raw_topic, count=5)
    by_id = {m["messageId"]: m for _, m in found}
    assert sorted(by_id) == sorted(ids)
    assert {m["type"] for m in by_id.values()} == {"identify", "track", "page", "group", "alias"}
    for message in by_id.values():
        assert "writeKey" not in message  # the SDK puts it in the body; it never reaches Kafka
        assert message["context"]["library"]["name"] == "analytics-python"
        assert message["sentAt"]  # merged from the batch for event-time skew correction
        assert message["receivedAt"]


def test_the_worker_serves_the_collector_when_write_keys_are_set(settings, start_worker, endpoints):
    mine = private(settings)
    worker = start_worker(mine)
    url = f"http://127.0.0.1:{mine.collector_port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    # Faust starts services once table recovery is done, just after the web server.
    wait_until(healthy, timeout=30, what="the worker's collector")
    answer = post(
        url + "/v1/batch", {"batch": [_track("w1", "in-worker-1"), _track("w2", "in-worker-2")]}
    )
    assert answer.status == 200, answer.body
    found = raw_messages(endpoints, mine.raw_topic, count=2)
    assert sorted(m["messageId"] for _, m in found) == ["in-worker-1", "in-worker-2"]
    assert post(url + "/v1/track", _track("w1", "x"), key="wrong").status == 401
    metrics = worker.metrics()
    assert 'intent_stream_collector_requests_total{endpoint="batch",status="200"} 1.0' in metrics
    assert 'intent_stream_collector_events_total{type="track"} 2.0' in metrics
