"""The metrics bundle: naming rules, README coverage, and counting produce failures."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from intent_stream.agents.sinks import observe_send
from intent_stream.marketing import CampaignLabels
from intent_stream.metrics import AGENTS, FAUST_PREFIX, PRODUCE_TOPICS, Metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def _families(metrics: Metrics) -> dict[str, str]:
    return {f.name: f.type for f in metrics.registry.collect()}


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_engine_metrics_follow_the_naming_rules():
    families = _families(Metrics(CollectorRegistry()))
    engine = {n: t for n, t in families.items() if not n.startswith(FAUST_PREFIX)}
    assert len(engine) >= 15
    for name, kind in engine.items():
        assert re.fullmatch(r"intent_stream_[a-z_]+", name), name
        # Durations are _seconds histograms; the histograms of counts say what they count.
        counts = {"intent_stream_alerts_per_account_day", "intent_stream_score_batch_records"}
        if kind == "histogram" and name not in counts:
            assert name.endswith("_seconds"), name
    faust = [n for n in families if n.startswith(FAUST_PREFIX + "_")]
    assert f"{FAUST_PREFIX}_messages_received" in faust
    assert len(faust) > 20


def test_labels_known_in_advance_start_at_zero():
    m = Metrics(CollectorRegistry())
    for agent in AGENTS:
        assert _value(m, "intent_stream_agent_records_total", agent=agent) == 0.0
    for topic in PRODUCE_TOPICS:
        assert _value(m, "intent_stream_produce_errors_total", topic=topic) == 0.0
    assert _value(m, "intent_stream_model_labels", polarity="positive") == 0.0


def test_readme_documents_every_engine_metric():
    documented = set(re.findall(r"^\| `(intent_stream_[a-z_]+)", README.read_text(), re.M))
    m = Metrics(CollectorRegistry())
    for name, kind in _families(m).items():
        if name.startswith(FAUST_PREFIX):
            continue
        exposed = name + "_total" if kind == "counter" else name
        assert exposed in documented, f"README Metrics table lacks {exposed}"


async def _send_ok() -> asyncio.Future[str]:
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    fut.set_result("metadata")
    return fut


async def _send_fails_later() -> asyncio.Future[str]:
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    fut.set_exception(ConnectionError("broker gone"))
    return fut


async def _send_raises() -> asyncio.Future[str]:
    raise ConnectionError("producer stopped")


@pytest.mark.parametrize(
    ("send", "errors", "delivered"),
    [(_send_ok, 0.0, 1), (_send_fails_later, 1.0, 0), (_send_raises, 1.0, 0)],
)
def test_observe_send_counts_failures_without_raising(send, errors, delivered):
    m = Metrics(CollectorRegistry())
    calls: list[int] = []

    async def run() -> None:
        await observe_send(send(), metrics=m, topic="alerts", on_delivered=lambda: calls.append(1))
        await asyncio.sleep(0)  # let done-callbacks run

    asyncio.run(run())
    assert _value(m, "intent_stream_produce_errors_total", topic="alerts") == errors
    assert _value(m, "intent_stream_produce_errors_total", topic="dlq") == 0.0
    assert len(calls) == delivered


def test_marketing_counter_bounds_the_campaign_label():
    m = Metrics(CollectorRegistry(), campaigns=CampaignLabels.from_setting("kept", cap=3))
    counts = {("pricing_view", "email", f"c{i}", "pricing"): 1 for i in range(100)}
    counts[("pricing_view", "email", "kept", "pricing")] = 2
    m.count_marketing(counts)
    m.count_marketing({("demo_request", "direct", "c1", "demo"): 1})
    samples = [
        s
        for family in m.registry.collect()
        if family.name == "intent_stream_marketing_signals"
        for s in family.samples
        if s.name.endswith("_total")
    ]
    campaigns = {s.labels["campaign"]: 0.0 for s in samples}
    for s in samples:
        campaigns[s.labels["campaign"]] += s.value
    # The first three names, the allowlisted one, and everything else as "other".
    assert campaigns == {"c0": 1.0, "c1": 2.0, "c2": 1.0, "kept": 2.0, "other": 97.0}


def test_workers_bound_campaigns_as_configured():
    from intent_stream.app import create_app
    from intent_stream.settings import Settings

    settings = Settings(
        kafka="127.0.0.1:1",
        redis="redis://127.0.0.1:1/0",
        marketing_campaigns="a, B",
        marketing_campaign_cap=7,
    )
    engine = create_app(settings)
    assert engine.metrics.campaigns.allow == {"a", "b"}
    assert engine.metrics.campaigns.cap == 7


def test_the_faust_monitor_exports_what_faust_s_own_sensor_does():
    """FaustMonitor caches labelled series; the exposition must be the same as with Faust's
    PrometheusMonitor for the same calls, across a rebalance that removes series."""
    from types import SimpleNamespace

    from faust.sensors.prometheus import PrometheusMonitor
    from faust.types import TP

    from intent_stream.metrics import FaustMonitor

    class Stream(SimpleNamespace):
        __hash__ = object.__hash__

    def drive(monitor_type):
        m = Metrics(CollectorRegistry())
        monitor = monitor_type(metrics=m.faust)
        stream = Stream(shortlabel="Stream: Topic: intent.events.v1")
        stream.task_owner = Stream()
        table = SimpleNamespace(name="account-state")
        app = SimpleNamespace(rebalancing_count=1)
        for round_ in range(2):
            for offset in range(3):
                for tp in (TP("intent.events.v1", 0), TP("intent.events.v1", 1)):
                    monitor.on_message_in(tp, offset, SimpleNamespace())
                    monitor.track_tp_end_offset(tp, offset + 10)
                    monitor.on_stream_event_in(tp, offset, stream, None)
                    monitor.on_table_get(table, "acme.com")
                    monitor.on_table_set(table, "acme.com", b"{}")
                    monitor.on_send_initiated(None, "intent.alerts.v1", None, 0, 10)
            if round_ == 0:
                state = monitor.on_rebalance_start(app)
                monitor.on_rebalance_return(app, state)
                monitor.on_rebalance_end(app, state)
        return [
            line
            for line in m.exposition().decode().splitlines()
            if line.startswith("intent_stream_faust_")
            and "latency" not in line
            and "_created " not in line
            and "_created{" not in line
        ]

    ours, faust_s = drive(FaustMonitor), drive(PrometheusMonitor)
    assert ours == faust_s
    assert any("messages_received_per_topics_partition{" in line for line in ours)
