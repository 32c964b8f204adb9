"""Alerts on the sales side, end to end: ``alerts forward`` and ``alerts tail`` as real
processes against the embedded broker and Redis, a real HTTP server as the webhook, and real
workers for the replay-determinism test."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from intent_stream.alerts import cloudevent_headers, event_source
from intent_stream.embedded import free_port, spawn_child, stop_child
from intent_stream.pipeline import INTENT_RULE
from intent_stream.scoring import alert_id
from intent_stream.settings import Settings
from intent_stream.topics import ensure_topics

from .conftest import read_topic, settings_env, wait_until
from .test_worker import _hot_batch, _listening_addresses, _samples

pytestmark = pytest.mark.integration

# -- the webhook -------------------------------------------------------------------------

#: What the webhook does with request number n (0-based) carrying ``body``: an HTTP status,
#: or ("sleep", seconds) to answer 200 only after the client has given up.
Behaviour = Callable[[int, Any], "int | tuple[str, float]"]


@dataclass
class Request:
    n: int
    headers: dict[str, str]
    body: Any
    status: int | None  # None: the webhook stalled past the client's timeout


@dataclass
class Webhook:
    """A local HTTP server standing in for Slack or a CRM; records every request."""

    behaviour: Behaviour = lambda n, body: 200
    port: int = field(default_factory=free_port)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Webhook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = orjson.loads(raw)
                with hook.lock:
                    n = len(hook.requests)
                    request = Request(n, dict(self.headers.items()), body, None)
                    hook.requests.append(request)
                answer = hook.behaviour(n, body)
                if isinstance(answer, tuple):
                    time.sleep(answer[1])  # longer than the forwarder's webhook_timeout
                    answer = 200
                    status = None
                else:
                    status = answer
                request.status = status  # before answering: the client acts on the answer
                payload = b"ok" if answer < 300 else b'{"error": "invalid_blocks"}'
                self.send_response(answer)
                if answer == 503:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def delivered(self) -> Counter[str]:
        """Alert id -> number of 2xx answers the webhook gave for it."""
        with self.lock:
            return Counter(
                r.headers["Idempotency-Key"]
                for r in self.requests
                if r.status is not None and 200 <= r.status < 300
            )


@pytest.fixture
def webhooks() -> Iterator[Callable[..., Webhook]]:
    made: list[Webhook] = []

    def make(behaviour: Behaviour | None = None, *, port: int | None = None) -> Webhook:
        hook = Webhook(**({"behaviour": behaviour} if behaviour else {}))
        if port is not None:
            hook.port = port
        made.append(hook.start())
        return hook

    yield make
    for hook in made:
        hook.stop()


# -- the forwarder and tail processes ------------------------------------------------------


@pytest.fixture
def alert_settings(settings: Settings) -> Settings:
    """The test's settings plus its own alerts DLQ and quick retries; topics created."""
    tag = uuid.uuid4().hex[:8]
    s = settings.replace(
        alerts_dlq_topic=f"it.{tag}.sales-alerts.dlq.v1",
        webhook_timeout=1.0,
        webhook_max_backoff=0.5,
    )
    ensure_topics(s)
    return s


@dataclass
class Forwarder:
    proc: subprocess.Popen[bytes]
    metrics_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        assert self.proc.poll() is None, f"forwarder exited:\n{self.log()[-3000:]}"
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            return _samples(response.read().decode())

    def count(self, name: str, **labels: str) -> float:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return self.metrics().get(f"{name}{{{inner}}}" if inner else name, 0.0)

    def deliveries(self, outcome: str) -> float:
        return self.count("intent_stream_webhook_deliveries_total", outcome=outcome)

    def stop(self) -> int:
        stop_child(self.proc, timeout=20)
        return self.proc.returncode


@pytest.fixture
def start_forwarder(tmp_path: Path) -> Iterator[Callable[..., Forwarder]]:
    started: list[Forwarder] = []

    def start(settings: Settings, *, group: str, args: tuple[str, ...] = ()) -> Forwarder:
        port = free_port()
        log_path = tmp_path / f"forwarder-{len(started)}.log"
        argv = [sys.executable, "-m", "intent_stream", "alerts", "forward", "--from-beginning"]
        argv += ["--group", group, "--metrics-port", str(port), *args]
        proc = spawn_child(argv, env=settings_env(settings), log_path=log_path)
        forwarder = Forwarder(proc, port, log_path)
        started.append(forwarder)

        def ready() -> bool:
            try:
                forwarder.metrics()
            except OSError:
                return False
            return True

        wait_until(ready, timeout=60, what="the forwarder's /metrics")
        return forwarder

    yield start
    for forwarder in started:
        stop_child(forwarder.proc, timeout=20)


def _alert(account: str, episode: int = 1, score: float = 80.0) -> dict[str, Any]:
    return {
        "alert_id": alert_id(account, INTENT_RULE, episode),
        "account_id": account,
        "rule": INTENT_RULE,
        "intent_score": score,
        "threshold": 70.0,
        "episode": episode,
        "reasons": ["viewed pricing", "requested a demo"],
        "events": 12,
        "event_time": f"2026-11-2{episode % 10}T10:00:00.000Z",
        "since_last_alert": None,
    }


def _publish(producer: Any, settings: Settings, alerts: list[dict[str, Any]]) -> None:
    for alert in alerts:
        producer.send(
            settings.alerts_topic,
            key=alert["account_id"].encode(),
            value=orjson.dumps(alert),
            headers=cloudevent_headers(alert, source=event_source(settings.app_id)),
        )
    producer.flush()


def _accounts(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"a{i}-{tag}.example" for i in range(n)]


# -- tests -------------------------------------------------------------------------------


def test_the_forwarder_posts_each_alert_once_as_a_slack_message(
    alert_settings, producer, webhooks, start_forwarder
):
    hook = webhooks()
    settings = alert_settings.replace(webhook=hook.url)
    alerts = [_alert(a) for a in _accounts(5)]
    _publish(producer, settings, alerts)
    forwarder = start_forwarder(settings, group=f"{settings.app_id}-fwd")

    wait_until(lambda: forwarder.deliveries("delivered") == 5, timeout=60, what="5 deliveries")
    assert hook.delivered() == Counter({a["alert_id"]: 1 for a in alerts})
    assert len(hook.requests) == 5
    for request in hook.requests:
        assert request.headers["Content-Type"] == "application/json"
        body = request.body
        assert body["text"].startswith("Hot lead: ")
        alert = next(a for a in alerts if a["alert_id"] == request.headers["Idempotency-Key"])
        assert alert["account_id"] in body["text"]
        blob = orjson.dumps(body["blocks"]).decode()
        assert "80.0 / 100" in blob
        assert "requested a demo" in blob
    assert forwarder.deliveries("duplicate") == 0
    assert forwarder.count("intent_stream_webhook_request_seconds_count") == 5
    assert forwarder.count("intent_stream_alerts_per_account_day_count") == 5
    addresses = _listening_addresses(forwarder.proc.pid)
    assert addresses, "found no listening socket of the forwarder (its /metrics)"
    assert addresses <= {"127.0.0.1", "::1"}, addresses
    assert forwarder.stop() == 0, forwarder.log()[-2000:]
    assert hook.url not in forwarder.log()  # the webhook URL is a secret


def test_a_replay_into_a_new_group_posts_none_twice(
    alert_settings, producer, webhooks, start_forwarder
):
    hook = webhooks()
    settings = alert_settings.replace(webhook=hook.url)
    alerts = [_alert(a) for a in _accounts(4)]
    _publish(producer, settings, alerts)
    first = start_forwarder(settings, group=f"{settings.app_id}-fwd-1")
    wait_until(lambda: first.deliveries("delivered") == 4, timeout=60, what="4 deliveries")
    assert first.stop() == 0

    # Same topic from the beginning, a new consumer group, a fresh process: Redis knows.
    second = start_forwarder(settings, group=f"{settings.app_id}-fwd-2")
    wait_until(lambda: second.deliveries("duplicate") == 4, timeout=60, what="4 duplicates")
    assert second.deliveries("delivered") == 0
    assert len(hook.requests) == 4

    fresh = _alert(_accounts(1)[0])
    _publish(producer, settings, [fresh])  # the replaying forwarder still delivers new ones
    wait_until(lambda: second.deliveries("delivered") == 1, timeout=60, what="the new alert")
    assert hook.delivered() == Counter({a["alert_id"]: 1 for a in [*alerts, fresh]})


def test_an_endpoint_down_for_a_while_loses_no_alert(
    alert_settings, producer, webhooks, start_forwarder
):
    port = free_port()
    # A timeout well above a 503's answer time even on a loaded machine, so that the one
    # stalled request is the only timeout.
    settings = alert_settings.replace(webhook=f"http://127.0.0.1:{port}/hook", webhook_timeout=3.0)
    alerts = [_alert(a) for a in _accounts(4)]
    _publish(producer, settings, alerts)
    forwarder = start_forwarder(settings, group=f"{settings.app_id}-fwd")

    # Nothing listens yet: connection refused, retried.
    wait_until(
        lambda: forwarder.count("intent_stream_webhook_failures_total", kind="connection") >= 2,
        timeout=60,
        what="refused connections",
    )
    assert forwarder.deliveries("delivered") == 0

    def recovering(n: int, body: Any) -> int | tuple[str, float]:
        if n == 0:
            return ("sleep", 6.0)  # answers after the forwarder's 3 s timeout
        return 503 if n < 4 else 200

    hook = webhooks(recovering, port=port)
    wait_until(lambda: forwarder.deliveries("delivered") == 4, timeout=90, what="4 deliveries")
    assert hook.delivered() == Counter({a["alert_id"]: 1 for a in alerts})
    failures = {
        kind: forwarder.count("intent_stream_webhook_failures_total", kind=kind)
        for kind in ("timeout", "http_5xx")
    }
    assert failures == {"timeout": 1.0, "http_5xx": 3.0}
    assert forwarder.deliveries("dead_lettered") == 0


def test_a_refused_alert_goes_to_the_alerts_dlq_and_does_not_block_the_others(
    alert_settings, producer, webhooks, start_forwarder, endpoints
):
    account = _accounts(1)[0]
    alerts = [_alert(account, episode) for episode in range(1, 6)]  # one partition, in order
    bad = alerts[1]["alert_id"]

    def refuse_one(n: int, body: Any) -> int:
        return 400 if body["id"] == bad else 200

    hook = webhooks(refuse_one)
    settings = alert_settings.replace(webhook=hook.url)
    _publish(producer, settings, alerts)
    forwarder = start_forwarder(settings, group=f"{settings.app_id}-fwd", args=("--format", "json"))

    wait_until(lambda: forwarder.deliveries("delivered") == 4, timeout=60, what="4 deliveries")
    assert hook.delivered() == Counter({a["alert_id"]: 1 for a in alerts if a["alert_id"] != bad})
    dead = read_topic(endpoints, settings.alerts_dlq_topic, count=1, timeout=30)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["dlq.reason"] == b"refused"
    assert headers["dlq.status"] == b"400"
    assert b"invalid_blocks" in headers["dlq.detail"]
    assert headers["dlq.topic"].decode() == settings.alerts_topic
    assert headers["ce_id"].decode() == bad
    assert dead[0].key == account.encode()
    assert orjson.loads(dead[0].value) == alerts[1]  # the alert's bytes, unchanged
    assert forwarder.deliveries("dead_lettered") == 1
    assert forwarder.count("intent_stream_webhook_failures_total", kind="http_4xx") == 1
    for request in hook.requests:  # --format json: the CloudEvent, with the alert as data
        assert request.headers["Content-Type"] == "application/cloudevents+json"
        assert request.body["specversion"] == "1.0"
        assert request.body["data"]["alert_id"] == request.body["id"]


def test_records_unlike_alerts_and_alerts_given_up_on_are_dead_lettered_with_their_reason(
    alert_settings, producer, webhooks, start_forwarder, endpoints
):
    account = _accounts(1)[0]
    good, hopeless = _alert(account, 1), _alert(account, 3)
    # JSON objects with an id but shaped unlike an alert: no Slack message can be made.
    odd = {"alert_id": f"odd-{uuid.uuid4().hex[:6]}", "account_id": account, "triggers": 5}

    hook = webhooks()
    settings = alert_settings.replace(webhook=hook.url)
    _publish(producer, settings, [good])
    producer.send(settings.alerts_topic, key=account.encode(), value=b"[1, 2]")  # not an alert
    producer.send(settings.alerts_topic, key=account.encode(), value=orjson.dumps(odd))
    producer.flush()
    forwarder = start_forwarder(settings, group=f"{settings.app_id}-fwd")

    wait_until(lambda: forwarder.deliveries("dead_lettered") == 2, timeout=60, what="2 letters")
    wait_until(lambda: forwarder.deliveries("delivered") == 1, timeout=60, what="1 delivery")
    assert hook.delivered() == Counter({good["alert_id"]: 1})
    dead = read_topic(endpoints, settings.alerts_dlq_topic, count=2, timeout=30)
    reasons = [dict(r.headers)["dlq.reason"] for r in dead]
    assert reasons == [b"invalid_alert", b"invalid_alert"]
    assert b"cannot be formatted as slack" in dict(dead[1].headers)["dlq.detail"]
    assert dead[1].value == orjson.dumps(odd)  # the record's bytes, unchanged

    # An alert the webhook keeps failing is given up on after webhook_give_up seconds.
    hook_down = webhooks(lambda n, body: 500)
    gave_up_settings = alert_settings.replace(webhook=hook_down.url, webhook_give_up=2.0)
    _publish(producer, gave_up_settings, [hopeless])
    stopped = forwarder.stop()
    assert stopped == 0, forwarder.log()[-2000:]
    second = start_forwarder(gave_up_settings, group=f"{settings.app_id}-fwd")
    wait_until(lambda: second.deliveries("dead_lettered") == 1, timeout=60, what="give up")
    dead = read_topic(endpoints, settings.alerts_dlq_topic, count=3, timeout=30)
    last = dict(dead[-1].headers)
    assert last["dlq.reason"] == b"gave_up"
    assert last["dlq.status"] == b"500"
    assert len(hook_down.requests) >= 2  # retried before giving up
    assert second.count("intent_stream_webhook_failures_total", kind="http_5xx") >= 2


def test_tail_prints_the_alerts_as_json_and_as_lines(alert_settings, producer, tmp_path):
    settings = alert_settings
    alerts = [_alert(a) for a in _accounts(3)]
    _publish(producer, settings, alerts)
    env = settings_env(settings)
    base = [sys.executable, "-m", "intent_stream", "alerts", "tail", "--from-beginning"]
    json_log, text_log = tmp_path / "tail-json.log", tmp_path / "tail-text.log"
    as_json = spawn_child([*base, "--json"], env=env, log_path=json_log)
    as_text = spawn_child(base, env=env, log_path=text_log)
    try:

        def events() -> list[dict] | None:
            found = []
            for line in json_log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    found.append(orjson.loads(line))
            return found if len(found) >= 3 else None

        printed = wait_until(events, timeout=60, what="3 JSON lines from alerts tail")
        assert sorted(e["id"] for e in printed) == sorted(a["alert_id"] for a in alerts)
        for event in printed:
            assert event["specversion"] == "1.0"
            assert event["type"] == "io.intent-stream.alert.intent_threshold"
            assert event["source"] == event_source(settings.app_id)
            assert event["subject"] == event["data"]["account_id"]
            assert event["data"]["alert_id"] == event["id"]

        def lines() -> list[str] | None:
            text = text_log.read_text(errors="replace").splitlines()
            found = [line for line in text if line.startswith("2026-11-21T10:00:00.000Z")]
            return found if len(found) >= 3 else None

        printed_lines = wait_until(lines, timeout=60, what="3 lines from alerts tail")
        for alert in alerts:
            assert any(alert["account_id"] in line and "80.0" in line for line in printed_lines)

        # Ctrl-C stops cleanly: exit 0, no traceback.
        for proc in (as_json, as_text):
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=20) == 0
        for log in (json_log, text_log):
            assert "Traceback" not in log.read_text(errors="replace")
    finally:
        stop_child(as_json)
        stop_child(as_text)


@pytest.mark.parametrize("replay_decisions", ["record", "batch"])
def test_replaying_the_input_into_a_fresh_worker_gives_the_same_alert_ids_posted_once(
    alert_settings,
    start_worker,
    producer,
    endpoints,
    webhooks,
    start_forwarder,
    tmp_path,
    replay_decisions,
):
    """A fresh worker replaying the input publishes the alerts' ids again, whether it
    decides per record or per batch (an alert of the same episode keeps its id)."""
    hook = webhooks()
    settings = alert_settings.replace(webhook=hook.url)
    worker = start_worker(settings)
    accounts = _accounts(3)
    for account in accounts:
        producer.send(
            settings.events_topic, key=account.encode(), value=orjson.dumps(_hot_batch(account))
        )
    producer.flush()
    first = read_topic(endpoints, settings.alerts_topic, count=3, timeout=90)
    ids = sorted(orjson.loads(r.value)["alert_id"] for r in first)
    assert sorted(dict(r.headers)["ce_id"].decode() for r in first) == ids
    forwarder = start_forwarder(settings, group=f"{settings.app_id}-fwd-1")
    wait_until(lambda: forwarder.deliveries("delivered") == 3, timeout=60, what="3 deliveries")
    assert forwarder.stop() == 0
    stop_child(worker.proc, timeout=20)

    # A fresh worker: new app id (consumer group, empty state), same input, another alert topic.
    tag = uuid.uuid4().hex[:8]
    replay = settings.replace(
        app_id=f"it-replay-{tag}",
        alerts_topic=f"it.{tag}.sales-alerts.v1",
        web_port=free_port(),
        data_dir=str(tmp_path / "replay-data"),
        score_decisions=replay_decisions,
    )
    start_worker(replay)
    second = read_topic(endpoints, replay.alerts_topic, count=3, timeout=90)
    assert sorted(orjson.loads(r.value)["alert_id"] for r in second) == ids
    assert sorted(dict(r.headers)["ce_id"].decode() for r in second) == ids

    replayed = start_forwarder(replay, group=f"{replay.app_id}-fwd")
    wait_until(lambda: replayed.deliveries("duplicate") == 3, timeout=60, what="3 duplicates")
    assert replayed.deliveries("delivered") == 0
    assert hook.delivered() == Counter(dict.fromkeys(ids, 1))
    assert len(hook.requests) == 3


def _event(account: str, t: float, person: str, **fields: Any) -> dict[str, Any]:
    from intent_stream.pipeline import iso

    base = {"userId": person, "timestamp": iso(T0_ALERTS + t), "context": {"groupId": account}}
    return {**base, **fields}


T0_ALERTS = 1_787_000_000.0  # Aug 2026: the surge history below ends before the test runs
DAY = 86400.0


def test_stage_entry_and_surge_alerts_arrive_with_the_sales_payload_and_are_posted(
    alert_settings, start_worker, producer, endpoints, webhooks, start_forwarder
):
    from jsonschema import Draft202012Validator

    from intent_stream.schemas import load_schema

    hook = webhooks()
    settings = alert_settings.replace(
        webhook=hook.url, alert_routes="region=EMEA & employees>=1000 -> emea-enterprise"
    )
    worker = start_worker(settings)
    staged, surging = _accounts(2)
    # One account fills in the contact form: it enters evaluation with a modest intent score.
    form = [
        _event(staged, 0, "vp-1", type="group", groupId=staged,
               traits={"country": "DE", "employees": 5000}),
        _event(staged, 1, "vp-1", type="identify",
               traits={"role": "VP Engineering", "seniority": "vp"}),
        _event(staged, 2, "vp-1", type="page", properties={"path": "/blog/a"}),
    ]  # fmt: skip
    records = [form, [_event(staged, 100, "vp-1", type="track", event="Form Submitted")]]
    # Another reads about one topic evenly for 12 weeks, then in a burst: a surge starts.
    topic = {"path": "/blog/a", "topic": "Security"}
    records += [
        [_event(surging, d * DAY, "dev-1", type="page", properties=topic)] for d in range(0, 84, 4)
    ]
    records.append(
        [
            _event(surging, (85 + i / 4) * DAY, "dev-1", type="page", properties=topic)
            for i in range(12)
        ]
    )
    for events in records:
        key = events[0]["context"]["groupId"].encode()
        producer.send(settings.events_topic, key=key, value=orjson.dumps(events))
    producer.flush()

    on_topic = read_topic(endpoints, settings.alerts_topic, count=2, timeout=90)
    alerts = {orjson.loads(r.value)["account_id"]: (orjson.loads(r.value), r) for r in on_topic}
    assert set(alerts) == {staged, surging}
    schema = Draft202012Validator(load_schema("sales-alert.v1.json"))
    for alert, record in alerts.values():
        assert not list(schema.iter_errors(alert))
        headers = dict(record.headers)
        assert headers["ce_type"].decode() == f"io.intent-stream.alert.{alert['rule']}"
        assert headers["ce_id"].decode() == alert["alert_id"]
        assert record.key == alert["account_id"].encode()

    stage_alert = alerts[staged][0]
    assert stage_alert["rules"] == ["stage_entry"]
    assert stage_alert["alert_id"] == alert_id(staged, "stage_entry", 1)
    assert stage_alert["intent_score"] < settings.alert_enter
    assert (stage_alert["previous_stage"], stage_alert["stage"]) == ("awareness", "evaluation")
    assert stage_alert["route"] == {
        "owner": "emea-enterprise",
        "matched": "region=EMEA & employees>=1000",
        "region": "EMEA",
    }
    assert stage_alert["people"][0]["id"] == "vp-1"
    assert stage_alert["people"][0]["role"] == "VP Engineering"
    assert stage_alert["people"][0]["senior"] is True
    assert [a["type"] for a in stage_alert["activities"]] == ["form_submit"]

    surge_alert = alerts[surging][0]
    assert surge_alert["rules"] == ["topic_surge"]
    assert surge_alert["alert_id"] == alert_id(surging, "topic_surge", 1)
    assert surge_alert["topics"][0]["topic"] == "security"
    assert surge_alert["topics"][0]["new"] is True
    assert surge_alert["route"]["owner"] == "sales-unknown"  # no country: no region

    def counted() -> dict[str, float] | None:
        values = _samples(worker.metrics())
        key = 'intent_stream_alerts_published_total{rule="topic_surge"}'
        return values if values.get(key) == 1.0 else None

    values = wait_until(counted, timeout=30, what="the alert metrics")
    assert values['intent_stream_alerts_published_total{rule="stage_entry"}'] == 1.0
    assert values['intent_stream_alerts_published_total{rule="intent_threshold"}'] == 0.0
    triggers = 'intent_stream_alert_triggers_total{outcome="alerted",rule="%s"}'
    assert values[triggers % "stage_entry"] == 1.0
    assert values[triggers % "topic_surge"] == 1.0

    # The Slack message says why now, the stage, the owner and who is engaged.
    forwarder = start_forwarder(settings, group=f"{settings.app_id}-fwd")
    wait_until(lambda: forwarder.deliveries("delivered") == 2, timeout=60, what="2 deliveries")
    by_id = {r.headers["Idempotency-Key"]: r.body for r in hook.requests}
    blob = orjson.dumps(by_id[stage_alert["alert_id"]]).decode()
    for text in (
        "entered evaluation",
        "awareness → evaluation",
        "emea-enterprise",
        "VP Engineering",
    ):
        assert text in blob, text
    assert (
        "surge of interest in security started"
        in orjson.dumps(by_id[surge_alert["alert_id"]]).decode()
    )
