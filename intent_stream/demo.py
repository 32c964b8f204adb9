"""``intent-stream demo``: the whole engine on one machine, fed by simulated buyer journeys.

The demo is a user of the engine like any other: it starts the embedded broker and Redis,
runs a worker as a separate process, publishes simulated events with a plain Kafka producer,
and shows alerts as *read back from the sales-alerts topic* by a plain Kafka consumer. The
status line reads the worker's own ``/metrics`` and the Redis read model.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from intent_stream.settings import Settings, hide_password
from intent_stream.topics import ensure_topics, kafka_client_options

__all__ = ["DemoOptions", "run_demo"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    duration: float | None = None
    accounts: int = 400
    rate: float = 1500.0
    seed: int = 42
    days_per_cohort: float = 90.0
    #: Half the anonymous visitors arrive without an account: identity resolution finds it.
    reveal_share: float = 0.5

    def __post_init__(self) -> None:
        """Reject what would show nothing (or never start): named as the command's options.

        >>> DemoOptions(rate=0)
        Traceback (most recent call last):
        ...
        ValueError: --rate must be positive
        """
        if self.duration is not None and not self.duration > 0:
            raise ValueError("--duration must be positive (or left out: until Ctrl-C)")
        if self.accounts < 1:
            raise ValueError("--accounts must be at least 1")
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("--rate must be positive")
        if not self.days_per_cohort > 0:
            raise ValueError("days_per_cohort must be positive")


@dataclass
class _Counters:
    sent: int = 0
    alerts: int = 0
    alert_ids: set[str] = field(default_factory=set)
    transition_ids: set[str] = field(default_factory=set)
    #: transitions read back, by the stage entered
    stages: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _first_start(options: DemoOptions) -> datetime:
    """Where the simulated clock starts: one cohort's days before now."""
    return datetime.now(UTC) - timedelta(days=options.days_per_cohort)


def _cohorts(options: DemoOptions, start: datetime) -> Iterator[dict[str, Any]]:
    """Simulated events forever from ``start``: one cohort of accounts after another, in
    event time (the cohorts of ``simulate --cohorts 0``)."""
    from intent_stream.simulate import simulate
    from intent_stream.simulate_cli import SimulateOptions, cohort_configs

    forever = SimulateOptions(
        accounts=options.accounts,
        days=options.days_per_cohort,
        seed=options.seed,
        reveal_share=options.reveal_share,
        start=start,
        cohorts=0,
    )
    for config in cohort_configs(forever):
        yield from simulate(config)


def _clock_note(options: DemoOptions, start: datetime) -> str:
    """How the demo's simulated clock runs, so that its dates (past, then future) make sense.

    >>> options = DemoOptions(days_per_cohort=90)
    >>> _clock_note(options, _first_start(options))  # doctest: +ELLIPSIS
    'the dates shown are simulated time: it starts 90 days ago (...) and runs on ...'
    """
    return (
        f"the dates shown are simulated time: it starts {options.days_per_cohort:.0f} days ago "
        f"({start.date().isoformat()}) and runs on {options.days_per_cohort:.0f} days per cohort, "
        "much faster than the wall clock, into the future"
    )


def _produce(
    settings: Settings,
    options: DemoOptions,
    start: datetime,
    counters: _Counters,
    stop: threading.Event,
) -> None:
    """Publish events from ``start`` on to the raw topic at ``options.rate`` as a tracker
    would: one record per visitor partition per tick, holding a Segment batch."""
    from kafka import KafkaProducer

    from intent_stream.client import route_records

    producer = KafkaProducer(**kafka_client_options(settings, client_id="intent-demo"), linger_ms=5)
    tick = 0.1
    per_tick = max(1, int(options.rate * tick))
    events = _cohorts(options, start)
    try:
        next_tick = time.monotonic()
        while not stop.is_set():
            batch = [next(events) for _ in range(per_tick)]
            for record in route_records(batch, partitions=settings.partitions):
                producer.send(
                    settings.raw_topic,
                    key=record.key,
                    value=record.value,
                    partition=record.partition,
                )
            with counters.lock:
                counters.sent += per_tick
            next_tick += tick
            stop.wait(max(0.0, next_tick - time.monotonic()))
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=5)


def _format_alert(alert: dict[str, Any]) -> str:
    """One demo line: account, score, the rules that fired, stage, owner, reasons."""
    reasons = "; ".join(alert.get("reasons", [])) or "rising intent"
    rules = "+".join(alert.get("rules") or [alert.get("rule", "intent_threshold")])
    stage = f" stage {alert['stage']}" if alert.get("stage") else ""
    route = alert.get("route") or {}
    owner = f" -> {route['owner']}" if route.get("owner") else ""
    return (
        f"\033[1mHOT LEAD\033[0m {alert['account_id']:<28} score {alert['intent_score']:5.1f}"
        f"  [{rules}]{stage}{owner}  ({alert['event_time'][:10]})  {reasons}"
    )


def _read_back(
    settings: Settings,
    topic: str,
    client_id: str,
    stop: threading.Event,
    handle: Callable[[dict[str, Any]], None],
) -> None:
    """Hand every record of ``topic`` (JSON) to ``handle`` until ``stop``, from the start."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        **kafka_client_options(settings, client_id=client_id),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        consumer_timeout_ms=500,
    )
    try:
        while not stop.is_set():
            for record in consumer:
                handle(orjson.loads(record.value))
                if stop.is_set():
                    break
    finally:
        consumer.close()


def _consume_alerts(
    settings: Settings, counters: _Counters, stop: threading.Event, out: Any
) -> None:
    """Print alerts as sales would get them: read back from the sales-alerts topic."""

    def show(alert: dict[str, Any]) -> None:
        with counters.lock:
            if alert["alert_id"] in counters.alert_ids:
                return
            counters.alert_ids.add(alert["alert_id"])
            counters.alerts += 1
        _clear_status(out)
        print(_format_alert(alert), file=out, flush=True)

    _read_back(settings, settings.alerts_topic, "intent-demo-alerts", stop, show)


#: Stage changes the demo prints a line for (all are counted in the summary): the ones sales
#: and customer success act on. Entering awareness, consideration or falling back is not shown.
SHOWN_STAGES = frozenset({"purchase", "customer", "at_risk", "churned"})


def _format_transition(t: dict[str, Any]) -> str:
    arrow = f"{t['from'] or 'new'} -> {t['to']}"
    chance = ""
    if t.get("churn_probability") is not None and t["to"] == "at_risk":
        chance = f"  churn risk {t['churn_probability']:.0%}"
    elif t.get("probability") is not None and t.get("next"):
        chance = f"  chance of {t['next']} next: {t['probability']:.0%}"
    return (
        f"\033[1mSTAGE\033[0m    {t['account_id']:<28} {arrow:<26} ({t['event_time'][:10]})"
        f"  {t['reason']}{chance}"
    )


def _consume_transitions(
    settings: Settings, counters: _Counters, stop: threading.Event, out: Any
) -> None:
    """Print stage changes as a CRM would see them: read back from the transitions topic."""

    def show(transition: dict[str, Any]) -> None:
        with counters.lock:
            if transition["transition_id"] in counters.transition_ids:
                return
            counters.transition_ids.add(transition["transition_id"])
            to = transition["to"]
            counters.stages[to] = counters.stages.get(to, 0) + 1
        if transition["to"] in SHOWN_STAGES:
            _clear_status(out)
            print(_format_transition(transition), file=out, flush=True)

    _read_back(settings, settings.transitions_topic, "intent-demo-stages", stop, show)


def _scrape(url: str) -> dict[str, float]:
    """Sum each metric family of a Prometheus text page (labels dropped)."""
    totals: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=2) as response:
        for line in response.read().decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            with contextlib.suppress(ValueError):
                totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def _clear_status(out: Any) -> None:
    if out.isatty():
        out.write("\r\033[K")


def _wait_for_worker(url: str, proc: Any, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the worker exited with code {proc.returncode} during start-up; "
                f"last lines of {log_path}:\n{_tail(log_path)}"
            )
        try:
            _scrape(url)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the worker did not start within {timeout:.0f}s; see {log_path}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_demo(settings: Settings, options: DemoOptions) -> int:
    """Run the demo until ``options.duration`` elapses or Ctrl-C; return the exit code."""
    from intent_stream.embedded import EmbeddedStack, free_port, spawn_child, stop_child

    out = sys.stdout
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    counters = _Counters()
    started = time.monotonic()
    embedded = [
        name
        for name, wanted in (
            ("broker", settings.kafka_embedded),
            ("Redis", settings.redis_embedded),
        )
        if wanted
    ]
    if embedded:
        print(f"intent-stream demo: starting the embedded {' and '.join(embedded)}...", flush=True)
    else:
        print("intent-stream demo: using the given broker and Redis...", flush=True)
    stack = EmbeddedStack(kafka=settings.kafka_embedded, redis=settings.redis_embedded)
    threads: list[threading.Thread] = []
    worker = None
    try:
        endpoints = stack.start()
        web_port = free_port()
        settings = settings.replace(
            kafka=endpoints.kafka_bootstrap if settings.kafka_embedded else None,
            redis=endpoints.redis_url if settings.redis_embedded else None,
            web_port=web_port,
            data_dir=str(stack.workdir / "worker-data"),
            # Simulated time runs far faster than the wall clock: later cohorts are "future".
            max_clock_skew=0.0,
        )
        if not stack.redis:
            from intent_stream.runner import ping_redis

            # Checked now, not after the run (where writing the summary would first fail).
            ping_redis(settings)
        if not stack.kafka:
            from intent_stream.runner import wait_for_broker

            # A broker that does not answer gets a clear message (BrokerUnavailable, printed
            # by main) after retries with back-off, not a hang or a traceback.
            print(f"  waiting for Kafka at {settings.kafka}...", flush=True)
            wait_for_broker(settings)
        ensure_topics(settings)
        log_path = stack.workdir / "worker.log"
        env = {**os.environ, **_settings_env(settings)}
        worker = spawn_child(
            [sys.executable, "-m", "intent_stream", "worker"], env=env, log_path=log_path
        )
        metrics_url = f"http://{settings.web_host}:{web_port}/metrics"
        print(f"  broker {settings.kafka}   redis {hide_password(settings.redis)}", flush=True)
        print(f"  worker pid {worker.pid}, metrics {metrics_url}, log {log_path}", flush=True)
        _wait_for_worker(metrics_url, worker, log_path, timeout=60)
        start = _first_start(options)
        print(
            f"  publishing simulated journeys of {options.accounts} accounts per cohort at "
            f"{options.rate:.0f} events/s; alerts (HOT LEAD) and stage changes (STAGE: "
            f"purchase, customer, at_risk, churned) appear below as read back from "
            f"{settings.alerts_topic} and {settings.transitions_topic}; "
            f"{_clock_note(options, start)}\n",
            flush=True,
        )
        threads = [
            threading.Thread(
                target=_produce, args=(settings, options, start, counters, stop), daemon=True
            ),
            threading.Thread(
                target=_consume_alerts, args=(settings, counters, stop, out), daemon=True
            ),
            threading.Thread(
                target=_consume_transitions, args=(settings, counters, stop, out), daemon=True
            ),
        ]
        for thread in threads:
            thread.start()
        processed = _status_loop(settings, options, counters, stop, worker, metrics_url, out)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        _summary(settings, counters, processed, time.monotonic() - started, out)
        return 0
    except KeyboardInterrupt:
        _clear_status(out)
        print("\nstopping...", file=out, flush=True)
        return 0
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        if worker is not None:
            stop_child(worker, timeout=20)
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def _status_loop(
    settings: Settings,
    options: DemoOptions,
    counters: _Counters,
    stop: threading.Event,
    worker: Any,
    metrics_url: str,
    out: Any,
) -> float:
    started = time.monotonic()
    last_t, last_processed, processed = started, 0.0, 0.0
    accounts = 0
    tty = out.isatty()
    interval = 1.0 if tty else 5.0
    while options.duration is None or time.monotonic() - started < options.duration:
        stop.wait(interval)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited unexpectedly (code {worker.returncode})")
        with contextlib.suppress(OSError):
            metrics = _scrape(metrics_url)
            processed = metrics.get("intent_stream_events_processed_total", processed)
            accounts = int(metrics.get("intent_stream_accounts", 0))
        now = time.monotonic()
        rate = (processed - last_processed) / max(1e-9, now - last_t)
        last_t, last_processed = now, processed
        line = (
            f"[{now - started:5.0f}s] sent {counters.sent:,}  processed {processed:,.0f} "
            f"({rate:,.0f}/s)  accounts {accounts:,}  alerts {counters.alerts}  "
            f"stage changes {len(counters.transition_ids):,}"
        )
        if tty:
            out.write("\r\033[K" + line)
            out.flush()
        else:
            print(line, file=out, flush=True)
    return processed


def _summary(
    settings: Settings, counters: _Counters, processed: float, elapsed: float, out: Any
) -> None:
    import redis

    from intent_stream.readmodel import account_key, by_score_key

    _clear_status(out)
    print(
        f"\nsummary: {elapsed:.0f}s, {counters.sent:,} events sent, {processed:,.0f} processed, "
        f"{counters.alerts} alerts read back from {settings.alerts_topic}",
        file=out,
    )
    if counters.stages:
        entered = ", ".join(f"{stage} {n:,}" for stage, n in sorted(counters.stages.items()))
        print(
            f"{len(counters.transition_ids):,} stage transitions read back from "
            f"{settings.transitions_topic}; accounts entering each stage: {entered}",
            file=out,
        )
    from intent_stream.app import redis_options

    client = redis.Redis.from_url(settings.redis, **redis_options(settings))
    try:
        top: list[tuple[bytes, float]] = client.zrevrange(  # type: ignore[assignment]
            by_score_key(settings.redis_prefix), 0, 4, withscores=True
        )
        if top:
            print("top accounts by intent score, with their stage (from Redis):", file=out)
            for account_id, score in top:
                raw = client.get(account_key(settings.redis_prefix, account_id.decode()))
                doc = orjson.loads(raw) if isinstance(raw, bytes) else {}
                stage = doc.get("stage", "")
                print(f"  {account_id.decode():<28} {float(score):5.1f}  {stage}", file=out)
    finally:
        client.close()
    out.flush()


def _settings_env(settings: Settings) -> dict[str, str]:
    from intent_stream.settings import env_name, setting_fields

    return {env_name(f.name): str(getattr(settings, f.name)) for f in setting_fields()}


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
