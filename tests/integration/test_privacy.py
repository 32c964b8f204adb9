"""Forgetting a person end to end, and what logs, metrics and Redis never hold.

A real worker with pseudonymisation on; ``intent-stream forget`` as a real process and
``DELETE /people/{id}`` on the worker's web server; then Redis and every state topic (the
table changelogs and the identity topic, i.e. what a restarted worker would recover) are
searched for the person's ids, raw and pseudonymised.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import uuid
from typing import Any

import orjson
import pytest
import redis

from intent_stream.identity import Pseudonymiser
from intent_stream.pipeline import iso
from intent_stream.readmodel import account_key
from intent_stream.topics import ACCOUNT_STATE_TABLE, PENDING_TABLE, changelog_topic

from .conftest import read_to_end, settings_env, wait_until
from .reliability import T0, metric

pytestmark = pytest.mark.integration

SECRETS = {
    "pseudonymise_key": "pk-s3cret",
    "write_keys": "wk-s3cret",
    "kafka_password": "kp-s3cret",
}
IP = "203.0.113.77"


def _latest(endpoints: Any, topic: str) -> dict[bytes, bytes | None]:
    """Each key's newest value on ``topic`` (what compaction keeps; None: a tombstone)."""
    records = read_to_end(endpoints, topic, timeout=30)
    return {r.key: r.value for r in records}


def _redis_dump(settings: Any) -> str:
    """Every key of this test's prefix with its value, as one searchable text."""
    client = redis.Redis.from_url(settings.redis)
    try:
        parts = []
        for key in client.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
            kind = client.type(key)
            value: Any = client.get(key) if kind == b"string" else client.zrange(key, 0, -1)
            parts.append(f"{key!r}={value!r}")
        return "\n".join(parts)
    finally:
        client.close()


def test_forget_leaves_no_trace_in_redis_state_or_identity(
    settings, start_worker, producer, endpoints
):
    settings = settings.replace(max_clock_skew=0.0, **SECRETS)
    pseudo = Pseudonymiser(SECRETS["pseudonymise_key"].encode())
    tag = uuid.uuid4().hex[:8]
    ann, cookie, bob, eve = f"ann-{tag}", f"c1-{tag}", f"bob-{tag}", f"eve-{tag}"
    domain = f"acme-{tag}.com"
    ctx = {"ip": IP, "userAgent": "Mozilla/5.0"}

    def ev(t: float, **fields: Any) -> dict[str, Any]:
        return {"timestamp": iso(T0 + t), "messageId": f"{tag}-{t}", "context": ctx, **fields}

    events = [
        ev(1, type="identify", anonymousId=cookie, userId=ann,
           traits={"email": f"{ann}@{domain}", "seniority": "director"}),
        ev(2, type="page", userId=ann, properties={"path": "/pricing"}),
        ev(3, type="page", anonymousId=cookie, properties={"path": "/compare/a-vs-b"}),
        ev(4, type="identify", userId=bob, traits={"email": f"{bob}@{domain}"}),
        ev(5, type="page", userId=bob, properties={"path": "/pricing"}),
        ev(6, type="page", userId=eve, properties={"path": "/pricing"}),  # no account: pending
    ]  # fmt: skip
    worker = start_worker(settings)
    producer.send(settings.raw_topic, key=cookie.encode(), value=orjson.dumps(events))
    producer.flush()

    client = redis.Redis.from_url(settings.redis)
    try:

        def snapshot() -> dict | None:
            raw = client.get(account_key(settings.redis_prefix, domain))
            return orjson.loads(raw) if raw and orjson.loads(raw)["events"] == 5 else None

        before = wait_until(snapshot, timeout=60, what="the account in Redis")
        assert before["features"]["people"] == 3.0  # ann, her cookie, bob
        wait_until(
            lambda: metric(worker, "intent_stream_pending_events_total") >= 1,
            timeout=30,
            what="eve's event pending",
        )
        hashed = {x: pseudo.person(x) for x in (ann, cookie, eve)}
        assert hashed[ann] in _redis_dump(settings)  # the graph's identity keys

        # The CLI forgets ann (and her cookie); the worker's API forgets eve.
        out = subprocess.run(
            [sys.executable, "-m", "intent_stream", "forget", "--person", ann],
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        report = orjson.loads(out.stdout)
        assert f"user:{hashed[ann]}" in report["nodes"]
        assert f"anon:{hashed[cookie]}" in report["nodes"]
        assert report["accounts"] == [domain]
        assert report["identity_tombstones"] == 2 * len(report["nodes"])
        assert report["control_records"] == 2 * settings.partitions
        assert report["redis_keys_deleted"] >= 2
        request = urllib.request.Request(
            f"http://{settings.web_host}:{settings.web_port}/people/{eve}", method="DELETE"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
            api_report = orjson.loads(response.read())
        assert f"user:{hashed[eve]}" in api_report["nodes"]

        needles = [ann, cookie, eve, *hashed.values()]

        def traces() -> list[str]:
            found = []
            dump = _redis_dump(settings)
            found += [f"redis:{n}" for n in needles if n in dump]
            for table in (ACCOUNT_STATE_TABLE, PENDING_TABLE):
                latest = _latest(endpoints, changelog_topic(settings, table))
                text = repr([v for v in latest.values() if v is not None])
                found += [f"{table}:{n}" for n in needles if n in text]
            for key, value in _latest(endpoints, settings.identity_topic).items():
                if value is not None and any(n.encode() in key + value for n in needles):
                    found.append(f"identity:{key!r}")
            return found

        wait_until(lambda: not traces(), timeout=60, what="no trace of ann or eve")
        after = orjson.loads(client.get(account_key(settings.redis_prefix, domain)))
        assert after["features"]["people"] == 1.0  # bob only
        assert after["events"] == 5  # what happened stays counted, without names
    finally:
        client.close()

    # Logs and metrics: no payloads, emails, IPs, person ids or secrets.
    log, exposition = worker.log(), worker.metrics()
    for needle in [IP, f"@{domain}", ann, cookie, eve, bob, *SECRETS.values()]:
        assert needle not in log, f"{needle!r} in the worker log"
        assert needle not in exposition, f"{needle!r} in /metrics"
    assert "forget request" in log
