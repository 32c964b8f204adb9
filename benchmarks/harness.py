"""What the benchmarks share: private settings, a worker process, its counters, preloading.

Not a benchmark itself (``make bench`` runs ``bench_*.py`` only).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from intent_stream.embedded import EmbeddedEndpoints, free_port, spawn_child
from intent_stream.settings import Settings, env_name, setting_fields

WORKDIR = Path(os.environ.get("TMPDIR", "/tmp"))
#: The counter the benchmarks read to know how far a worker got.
EVENTS_METRIC = "intent_stream_events_processed_total"

#: Seconds between two reads of a running worker's /metrics while measuring it: rendering
#: /metrics costs the worker CPU, and polling it every 50 ms took ~5% of its time.
POLL_S = 0.25


def write_result(name: str, result: Any) -> Path:
    """Write a benchmark's figures to ``benchmarks/results/<name>.json``; return the path."""
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    return path


def bench_settings(ep: EmbeddedEndpoints, name: str, **overrides: Any) -> Settings:
    """Settings with topics, group, Redis prefix and web port of their own."""
    tag = uuid.uuid4().hex[:6]
    values: dict[str, Any] = {
        "kafka": ep.kafka_bootstrap,
        "app_id": f"{name}-{tag}",
        "raw_topic": f"bench.{tag}.raw",
        "identity_topic": f"bench.{tag}.identity",
        "events_topic": f"bench.{tag}.events",
        "alerts_topic": f"bench.{tag}.alerts",
        "dlq_topic": f"bench.{tag}.dlq",
        "alerts_dlq_topic": f"bench.{tag}.alerts-dlq",
        "web_port": free_port(),
        "redis_prefix": f"bench:{tag}:",
        "log_level": "warning",
    }
    if ep.redis_url:  # a stack started without Redis (the collector's) leaves the default
        values["redis"] = ep.redis_url
    if os.environ.get("BENCH_EVENT_LOOP"):  # A/B runs: auto, uvloop or asyncio
        values["event_loop"] = os.environ["BENCH_EVENT_LOOP"]
    values.update(overrides)
    # A/B runs of a setting: BENCH_SETTINGS='{"score_batch_wait_ms": 2}' (a JSON object).
    values.update(json.loads(os.environ.get("BENCH_SETTINGS") or "{}"))
    return Settings(**values)


def spawn_worker(settings: Settings, log_name: str | None = None) -> Any:
    """``intent-stream worker`` as a child process configured by ``settings``."""
    env = {
        **os.environ,
        **{env_name(f.name): str(getattr(settings, f.name)) for f in setting_fields()},
    }
    return spawn_child(
        [sys.executable, "-m", "intent_stream", "worker"],
        env=env,
        log_path=WORKDIR / f"{log_name or settings.app_id}.log",
    )


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds process ``pid`` has used, its threads included (Linux
    /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command's closing parenthesis: state is field 3, utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metrics_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.web_port}/metrics"


def counters(url: str, *names: str) -> dict[str, float]:
    """Each metric family of a worker's /metrics summed over its labels ({} if unreachable);
    only the samples ``names`` if given (``?name[]=``: a whole page costs the worker tens of
    ms, which polling would take from what is measured)."""
    if names:
        url += "?" + urllib.parse.urlencode([("name[]", n) for n in names])
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        base = name.partition("{")[0]
        totals[base] = totals.get(base, 0.0) + float(value)
    return totals


def counter(url: str, name: str) -> float:
    """One metric of a worker's /metrics summed over its labels (0 if absent or unreachable)."""
    return counters(url, name).get(name, 0.0)


def preload(bootstrap: str, topic: str, recs: list[tuple[int | None, bytes, bytes]]) -> None:
    """Write (partition or None, key, value) records to ``topic`` and wait for them."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=512_000, max_request_size=8 << 20
    )
    for partition, key, value in recs:
        producer.send(topic, key=key, value=value, partition=partition)
    producer.flush()
    producer.close()
