"""A real Prometheus scrapes a real worker; every dashboard and alert-rule query runs on it.

The worker processes a hot buyer journey (visits from campaigns, a search engine and another
site, for the marketing view; an alert), outcome events (model labels), a cold
account and bad records (dead letters) while Prometheus scrapes it every second; then each
PromQL expression of deploy/grafana/dashboards and deploy/prometheus/rules.yml is evaluated
through Prometheus's HTTP API. Every expression must parse, every alert rule must evaluate
without error, and every dashboard query must return a number, except the few listed in
NO_DATA_IN_A_SHORT_RUN.
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from intent_stream.embedded import free_port, spawn_child, stop_child
from intent_stream.pipeline import iso
from intent_stream.topics import ensure_topics

from ..deploy.files import (
    COMPOSE,
    PROMETHEUS_DIR,
    dashboard_queries,
    prometheus_tools,
    rule_queries,
    substitute,
)
from .conftest import read_topic, settings_env, wait_until

pytestmark = pytest.mark.integration

#: Dashboard queries that may legitimately return nothing (or only NaN) in a run of seconds,
#: mapped to the reason. Keep it short and explicit: anything else without data is a broken
#: panel. Empty today: every panel, Faust's consumer-lag and rebalance gauges included, has
#: data once one worker has processed records and committed their offsets.
NO_DATA_IN_A_SHORT_RUN: dict[str, str] = {}
#: Alert rules that must be active (pending) after the scenario below, and only these: the
#: bad records make up more than 5% of the items, and the journey's alert fires for events
#: minutes old. Everything else (stalled, latency, Redis, produce errors, target down) is
#: quiet on a healthy worker.
ACTIVE_RULES = {"IntentStreamDeadLetterRateHigh", "IntentStreamAlertLatencyHigh"}


SITE = "https://www.vendor.example"
#: Where each committee member's visit comes from (the marketing view's channels and
#: campaigns): a paid-social and a paid-search campaign, a search engine, another site, none.
SPRING = {"name": "Spring Launch", "source": "linkedin", "medium": "paid_social"}
ENTRIES: list[tuple[str, dict[str, str] | None]] = [
    ("https://www.linkedin.com/", SPRING),
    ("https://www.google.com/", {"name": "brand-search", "source": "google", "medium": "cpc"}),
    ("https://www.google.com/", None),
    ("https://news.ycombinator.com/", None),
    ("", None),
]
PAGES = ["/product", "/pricing", "/compare/us-vs-them", "/blog/x"]


def _events(account: str, now: float) -> list[dict[str, Any]]:
    """A buying committee researching, comparing and asking for a demo: an alert."""
    t0 = now - 900
    events: list[dict[str, Any]] = []
    for i, (referrer, campaign) in enumerate(ENTRIES):
        base = {"userId": f"{account}-p{i}", "context": {"groupId": account}}
        events.append(
            {**base, "type": "identify", "timestamp": iso(t0 + i), "traits": {"seniority": "vp"}}
        )
        for j, path in enumerate(PAGES):
            context: dict[str, Any] = {
                "groupId": account,
                "page": {"path": path, "url": SITE + path, "referrer": referrer},
            }
            if campaign is not None:
                context["campaign"] = campaign  # the visit's UTM parameters
            events.append(
                {
                    **base,
                    "type": "page",
                    "timestamp": iso(t0 + 60 * i + j),
                    "properties": {"path": path},
                    "context": context,
                }
            )
    for k, name in enumerate(["Demo Requested", "Trial Started", "Whitepaper Downloaded"]):
        events.append(
            {
                "type": "track",
                "event": name,
                "userId": f"{account}-p0",
                "timestamp": iso(now - 100 + k),
                "context": {"groupId": account},
            }
        )
    return events


def _outcomes(account: str, now: float) -> list[dict[str, Any]]:
    """Visits a week apart, an opportunity and a won deal, a visit, then a lost deal.

    Delayed labels: the opportunity labels the account's two snapshots (a week ago, a minute
    ago) positive, the won deal finds none left, the lost deal labels the snapshot of the
    visit between them negative. Each label is predicted first, so ROC AUC is defined.
    """

    def event(name: str | None, at: float) -> dict[str, Any]:
        base = {"userId": f"{account}-crm", "timestamp": iso(at), "context": {"groupId": account}}
        if name is None:
            return {**base, "type": "page", "properties": {"path": "/pricing"}}
        return {**base, "type": "track", "event": name}

    return [
        event(None, now - 7 * 86400),
        event(None, now - 60),
        event("Opportunity Created", now - 50),
        event("Deal Won", now - 49),
        event(None, now - 45),
        event("Deal Lost", now - 40),
    ]


BAD_RECORDS = [b"", b"{not json", b"[1, 2]", orjson.dumps({"type": "track"})]


class Prometheus:
    """A Prometheus server child process and its HTTP API."""

    def __init__(self, binary: str, workdir: Path, scrape_target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROMETHEUS_DIR / "rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "intent-stream-worker",
                    "static_configs": [{"targets": [scrape_target]}],
                }
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.proc = spawn_child(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            log_path=self.log_path,
        )

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry the error as JSON
            return json.loads(exc.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def values(self, expr: str) -> list[float]:
        answer = self.query(expr)
        assert answer["status"] == "success", f"{expr!r}: {answer.get('error')}"
        result = answer["data"]["result"]
        if answer["data"]["resultType"] == "scalar":
            return [float(result[1])]
        return [float(sample["value"][1]) for sample in result]


@pytest.fixture
def prometheus_binary() -> str:
    return prometheus_tools()[0]


@pytest.fixture
def prometheus_for(prometheus_binary, tmp_path):
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = Prometheus(prometheus_binary, workdir, target)
        started.append(server)
        wait_until(server.ready, timeout=60, what="Prometheus to be ready")
        return server

    yield start
    for server in started:
        stop_child(server.proc, timeout=20)


def _counter(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_dashboards_and_rules_evaluate_on_a_scraped_worker(
    settings, start_worker, producer, endpoints, prometheus_for
):
    worker = start_worker(settings)
    prom = prometheus_for(f"{settings.web_host}:{settings.web_port}")
    # Scrapes before and after the events, so rates and quantiles see the counters move.
    wait_until(
        lambda: prom.values('up{job="intent-stream-worker"}') == [1.0],
        timeout=60,
        what="Prometheus to scrape the worker",
    )

    tag = uuid.uuid4().hex[:6]
    now = time.time()
    hot, cold, crm = f"hot-{tag}.example", f"cold-{tag}.example", f"crm-{tag}.example"
    topic = settings.events_topic
    cold_page = {
        "type": "page",
        "anonymousId": "a1",
        "timestamp": iso(now - 5),
        "context": {"groupId": cold},
        "properties": {"path": "/"},
    }

    def send_noise() -> None:
        producer.send(topic, key=cold.encode(), value=orjson.dumps(cold_page))
        for bad in BAD_RECORDS:
            producer.send(topic, key=cold.encode(), value=bad)
        producer.flush(timeout=10)

    def scraped(what: str) -> None:
        """Wait until Prometheus holds the worker's current dead-letter count."""
        dead = _counter(worker.metrics(), "intent_stream_dead_letters_total")
        wait_until(
            lambda: prom.values("sum(intent_stream_dead_letters_total)") == [dead],
            timeout=30,
            what=f"Prometheus to scrape {what}",
        )

    def series_samples(n: int) -> None:
        """Wait until every series has ``n`` samples (rate() needs two to compare)."""

        def fewest() -> int:
            matrix = prom.query('{__name__=~"intent_stream_.+"}[5m]')["data"]["result"]
            return min(len(series["values"]) for series in matrix)

        wait_until(lambda: fewest() >= n, timeout=30, what=f"{n} samples of every series")

    producer.send(topic, key=hot.encode(), value=orjson.dumps(_events(hot, now)))
    producer.send(topic, key=crm.encode(), value=orjson.dumps(_outcomes(crm, now)))
    send_noise()
    read_topic(endpoints, settings.alerts_topic, count=2, timeout=60)

    def processed(records: int, dead: int) -> bool:
        text = worker.metrics()
        return (
            _counter(text, "intent_stream_agent_records_total") >= records
            and _counter(text, "intent_stream_alert_latency_seconds_count") >= 1
            and _counter(text, "intent_stream_labels_learned_total") >= 3
            and _counter(text, "intent_stream_dead_letters_total") >= dead
        )

    first = 3 + len(BAD_RECORDS)
    wait_until(lambda: processed(first, len(BAD_RECORDS)), timeout=60, what="the first round")
    scraped("the first round")
    series_samples(2)
    # A labelled series first scraped at its final value shows no increase to rate(); a
    # second round moves the series that the first one created (dead letters by reason...).
    dead_first = _counter(worker.metrics(), "intent_stream_dead_letters_total")
    send_noise()
    wait_until(
        lambda: processed(first + 1 + len(BAD_RECORDS), int(2 * dead_first)),
        timeout=60,
        what="the second round",
    )
    scraped("the second round")
    series_samples(4)

    # Every alert rule is loaded and evaluates without error (health "ok", not "err").
    def rules_evaluated() -> list[dict[str, Any]]:
        groups = prom.api("rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if all(rule["health"] == "ok" for rule in rules) else []

    rules = wait_until(rules_evaluated, timeout=30, what="the alert rules to be evaluated")
    assert {rule["name"] for rule in rules} == {q.where.split(" / ")[1] for q in rule_queries()}
    for query in rule_queries():
        answer = prom.query(query.expr)
        assert answer["status"] == "success", f"{query.where}: {answer.get('error')}"

    def active_rules() -> set[str]:
        groups = prom.api("rules")["data"]["groups"]
        return {r["name"] for g in groups for r in g["rules"] if r["state"] != "inactive"}

    wait_until(
        lambda: active_rules() == ACTIVE_RULES,
        timeout=30,
        what=f"exactly {sorted(ACTIVE_RULES)} to be active",
    )

    no_data = []
    for query in dashboard_queries():
        values = prom.values(substitute(query.expr))
        if not any(not math.isnan(v) for v in values):
            no_data.append(query.where)
    assert set(no_data) <= set(NO_DATA_IN_A_SHORT_RUN), f"queries without data: {no_data}"

    # The figures the panels show are the ones the worker produced.
    # The journey alerts once on the threshold (its entry into evaluation in the same alert);
    # the CRM account alerts on entering purchase (its opportunity).
    assert prom.values('intent_stream_alerts_published_total{rule="intent_threshold"}') == [1.0]
    assert prom.values('intent_stream_alerts_published_total{rule="stage_entry"}') == [1.0]
    # The opportunity labels two snapshots positive, Deal Lost one negative (see _outcomes).
    assert prom.values('intent_stream_model_labels{polarity="positive"}') == [2.0]
    assert prom.values('intent_stream_model_labels{polarity="negative"}') == [1.0]
    # The marketing view's dimensions: the paid-social visitor's pages, by campaign; the
    # demo request and trial (no campaign, no referrer) as direct.
    linkedin = 'intent_stream_marketing_signals_total{channel="paid_social"}'
    assert prom.values(f"sum by (campaign) ({linkedin})") == [float(len(PAGES))]
    assert prom.query(f"sum by (campaign) ({linkedin})")["data"]["result"][0]["metric"] == {
        "campaign": "spring_launch"
    }
    high_intent = 'signal=~"demo_request|trial_start", channel="direct", content_type=~"demo|trial"'
    assert prom.values(f"sum(intent_stream_marketing_signals_total{{{high_intent}}})") == [2.0]
    reasons = {
        s["metric"]["reason"]
        for s in prom.query("intent_stream_dead_letters_total")["data"]["result"]
    }
    assert {"empty", "invalid_json", "not_an_event"} <= reasons


def test_generator_profile_publishes_simulated_journeys_until_stopped(
    settings, endpoints, tmp_path
):
    """The compose generator's own command line, against the embedded broker."""
    command = yaml.safe_load(COMPOSE.read_text())["services"]["generator"]["command"]
    ensure_topics(settings)
    log_path = tmp_path / "generator.log"
    proc = spawn_child(
        [sys.executable, "-m", "intent_stream", *command],
        env=settings_env(settings),
        log_path=log_path,
    )
    try:
        records = read_topic(endpoints, settings.raw_topic, count=1, timeout=60)
        events = orjson.loads(records[0].value)["batch"]
        assert events[0]["type"] in {"identify", "track", "page", "group"}
    finally:
        stop_child(proc, timeout=30)
    # SIGTERM is how the service stops: everything sent is flushed and it exits 0.
    assert proc.returncode == 0, log_path.read_text()
    assert "(stopped)" in log_path.read_text()
