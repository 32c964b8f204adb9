"""Journey stages in a real worker: transitions on their topic, the stage in Redis, replays.

A converting journey (research, demo, opportunity, won deal) goes through a worker as several
records; its transitions are read back from the stage-transitions topic and the account's
snapshot from Redis. A fresh worker (new consumer group, own transitions topic) replaying the
same event topic publishes the same transition ids. A bad stage config stops the worker at
start with the file, line and problem.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import orjson
import pytest
import redis

from intent_stream.embedded import free_port, spawn_child, stop_child
from intent_stream.pipeline import iso
from intent_stream.readmodel import account_key

from .conftest import read_topic, settings_env, wait_until

pytestmark = pytest.mark.integration

DAY = 86400.0


def _journey(account: str, start: float) -> list[list[dict]]:
    """Records of a converting account, in event time (days after ``start``)."""

    def ev(day: float, kind: str, person: str = "p1", **fields: object) -> dict:
        return {
            "type": kind,
            "userId": person,
            "timestamp": iso(start + day * DAY),
            "context": {"groupId": account},
            **fields,
        }

    return [
        [ev(0, "page", properties={"path": "/"}), ev(0.1, "identify", traits={"title": "CTO"})],
        [ev(2, "track", event="Whitepaper Downloaded")],
        [
            ev(5, "page", "p2", properties={"path": "/pricing"}),
            ev(5.1, "track", "p2", event="Demo Requested"),
        ],
        [ev(9, "track", "crm", event="Opportunity Created")],
        [ev(30, "track", "crm", event="Deal Won")],
    ]


EXPECTED = [
    (None, "awareness"),
    ("awareness", "consideration"),
    ("consideration", "evaluation"),
    ("evaluation", "purchase"),
    ("purchase", "customer"),
]


def _transitions(endpoints, topic: str, account: str, count: int) -> list[dict]:
    records = read_topic(
        endpoints,
        topic,
        count=count,
        timeout=90,
        predicate=lambda r: r.key == account.encode(),
    )
    return [orjson.loads(r.value) for r in records]


def test_a_converting_journey_publishes_its_transitions_and_replays_identically(
    settings, start_worker, producer, endpoints
):
    tag = uuid.uuid4().hex[:8]
    settings = settings.replace(transitions_topic=f"it.{tag}.stage-transitions.v1")
    account = f"conv-{tag}.example"
    start = time.time() - 40 * DAY
    worker = start_worker(settings)
    for record in _journey(account, start):
        producer.send(settings.events_topic, key=account.encode(), value=orjson.dumps(record))
        producer.flush(timeout=10)

    first = _transitions(endpoints, settings.transitions_topic, account, len(EXPECTED))
    assert [(t["from"], t["to"]) for t in first] == EXPECTED
    assert [t["seq"] for t in first] == [1, 2, 3, 4, 5]
    assert first[2]["reason"].startswith("requested a demo")
    assert first[4]["reason"] == "CRM outcome: Deal Won"
    assert first[4]["event_time"] == iso(start + 30 * DAY)
    assert all(0 <= t["probability"] <= 1 for t in first)

    client = redis.Redis.from_url(settings.redis)
    try:

        def customer() -> dict | None:
            raw = client.get(account_key(settings.redis_prefix, account))
            doc = orjson.loads(raw) if raw else None
            return doc if doc and doc.get("stage") == "customer" else None

        snapshot = wait_until(customer, timeout=30, what="the customer stage in Redis")
    finally:
        client.close()
    assert snapshot["stage_since"] == iso(start + 30 * DAY)
    assert [h["transition_id"] for h in snapshot["stage_history"]] == [
        t["transition_id"] for t in first
    ]

    def counted() -> str | None:
        text = worker.metrics()
        return text if 'intent_stream_stage_accounts{stage="customer"} 1.0' in text else None

    metrics = wait_until(counted, timeout=30, what="the stage gauge to count the customer")
    assert 'intent_stream_stage_transitions_total{from="purchase",to="customer"} 1.0' in metrics
    assert 'intent_stream_time_in_stage_seconds_count{stage="purchase"} 1.0' in metrics

    # A fresh worker (own group, changelog, key prefix and transitions topic) replays the
    # event topic from the start and publishes the same history with the same ids.
    tag2 = uuid.uuid4().hex[:8]
    replay = settings.replace(
        app_id=f"it-{tag2}",
        transitions_topic=f"it.{tag2}.stage-transitions.v1",
        redis_prefix=f"it:{tag2}:",
        data_dir=settings.data_dir + "-replay",
        web_port=free_port(),
    )
    start_worker(replay)
    second = _transitions(endpoints, replay.transitions_topic, account, len(EXPECTED))
    assert [t["transition_id"] for t in second] == [t["transition_id"] for t in first]
    assert [(t["from"], t["to"], t["event_time"]) for t in second] == [
        (t["from"], t["to"], t["event_time"]) for t in first
    ]


def test_a_bad_stage_config_stops_the_worker_at_start_with_the_line(settings, tmp_path):
    bad = tmp_path / "stages.toml"
    bad.write_text('version = 1\n[[stage]]\nname = "a"\nenter = ["pricing_veiw >= 1"]\n')
    log_path = tmp_path / "worker.log"
    proc = spawn_child(
        [sys.executable, "-m", "intent_stream", "worker"],
        env=settings_env(settings.replace(stage_config=str(bad))),
        log_path=log_path,
    )
    try:
        code = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        stop_child(proc)
        raise
    log = log_path.read_text()
    assert code == 1, log[-2000:]
    assert f"{bad}:4: stage 'a': enter rule 'pricing_veiw >= 1': unknown measure" in log
    assert "Traceback" not in log
