"""``intent-stream simulate``: simulated buyer journeys to a JSONL file or to the raw topic.

The command is a thin shell around :mod:`intent_stream.simulate`: it chains one or more
*cohorts* (a :class:`~intent_stream.simulate.SimulationConfig` each: the seed plus the cohort
number, each starting where the previous one ended), then either writes the events as JSON
lines with the ground truth beside them, or publishes them to the raw topic as the collector
and :class:`~intent_stream.client.IntentClient` do (one ``{"batch": [...]}`` record per visitor
partition per flush, keyed by visitor; :func:`intent_stream.client.route_records`).

The events are exactly :func:`~intent_stream.simulate.simulate`'s, unchanged: the same options
give the same file, byte for byte.

>>> truth_path_for(Path("runs/journeys.jsonl"))
PosixPath('runs/journeys.truth.jsonl')
>>> [(c.seed, c.first_index) for c in cohort_configs(SimulateOptions(accounts=5, days=10, seed=3,
...                                                                  cohorts=3))]
[(3, 0), (4, 5), (5, 10)]
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from intent_stream.settings import Settings
from intent_stream.simulate import SimulationConfig, ground_truth, simulate
from intent_stream.topics import kafka_client_options

__all__ = [
    "SimulateOptions",
    "SimulateSummary",
    "check_writable",
    "cohort_configs",
    "parse_start",
    "publish_simulation",
    "truth_path_for",
    "write_simulation",
    "write_truth",
]

logger = logging.getLogger(__name__)

#: Events per Kafka flush when no rate is given: one record per partition per flush.
FLUSH_EVENTS = 1000
#: Pacing granularity with ``--rate``: a flush every ``TICK`` seconds (or per event if slower).
TICK = 0.1
#: How long the broker has to acknowledge a record before it counts as not delivered.
DELIVERY_TIMEOUT_MS = 45_000


@dataclass(frozen=True, kw_only=True)
class SimulateOptions:
    """What to simulate and how fast to publish it.

    ``cohorts`` = 0 means one cohort after another until stopped (publishing only).
    ``start`` is the first cohort's start (UTC); ``None`` is the simulator's default
    (2026-01-01), unless ``ending_now`` moves the first window to end at the current time.
    """

    accounts: int = 200
    days: float = 90.0
    seed: int = 42
    reveal_share: float = 1.0
    crm_sync_minutes: float = 60.0
    start: datetime | None = None
    ending_now: bool = False
    cohorts: int = 1
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.accounts < 1:  # none would write nothing, or spin for ever with --cohorts 0
            raise ValueError("--accounts must be at least 1")
        if self.cohorts < 0:
            raise ValueError("--cohorts must be 0 (until stopped) or more")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("--rate must be a positive number (leave it out for full speed)")
        if self.ending_now and self.start is not None:
            raise ValueError("give --start or --ending-now, not both")
        # SimulationConfig checks accounts, days, reveal_share, crm_sync_minutes and the
        # window (all cohorts of a finite run in one); its messages start with the field's
        # name, which becomes the option's.
        try:
            SimulationConfig(
                accounts=self.accounts,
                days=self.days,
                seed=self.seed,
                reveal_share=self.reveal_share,
                crm_sync_minutes=self.crm_sync_minutes,
            )
            SimulationConfig(
                accounts=self.accounts,
                days=self.days * max(1, self.cohorts),
                start=self.start,
            )
        except ValueError as exc:
            name, _, rest = str(exc).partition(" ")
            raise ValueError(f"--{name.replace('_', '-')} {rest}") from None


@dataclass
class SimulateSummary:
    """What a run did: events written or acknowledged, accounts, seconds."""

    events: int = 0
    delivered: int = 0
    failed: int = 0
    accounts: int = 0
    cohorts: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    error: str | None = None


def parse_start(text: str) -> datetime:
    """An ISO-8601 date or date-time as an aware UTC datetime (naive means UTC).

    >>> parse_start("2026-03-01")
    datetime.datetime(2026, 3, 1, 0, 0, tzinfo=datetime.timezone.utc)
    >>> parse_start("2026-03-01T08:30:00+01:00").isoformat()
    '2026-03-01T07:30:00+00:00'
    >>> parse_start("March")
    Traceback (most recent call last):
    ...
    ValueError: --start: 'March' is not an ISO-8601 date or date-time (e.g. 2026-01-01)
    """
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--start: {text!r} is not an ISO-8601 date or date-time (e.g. 2026-01-01)"
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def truth_path_for(output: Path) -> Path:
    """Where the ground truth of ``output`` goes: ``X.jsonl`` -> ``X.truth.jsonl``."""
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(stem + ".truth.jsonl")


def cohort_configs(
    options: SimulateOptions, *, now: datetime | None = None
) -> Iterator[SimulationConfig]:
    """The cohorts' configurations, in order (for ever when ``options.cohorts`` is 0)."""
    if options.ending_now:
        current = now if now is not None else datetime.now(UTC)
        first = current.replace(microsecond=0) - timedelta(days=options.days)
    elif options.start is not None:
        first = options.start
    else:
        first = datetime.fromtimestamp(SimulationConfig(accounts=0).start_ms / 1000, UTC)
    counter = itertools.count() if options.cohorts == 0 else iter(range(options.cohorts))
    for i in counter:
        start = first + timedelta(days=options.days * i)
        yield SimulationConfig(
            accounts=options.accounts,
            days=options.days,
            seed=options.seed + i,
            start=start,
            reveal_share=options.reveal_share,
            first_index=options.accounts * i,
            crm_sync_minutes=options.crm_sync_minutes,
        )


class _Progress:
    """One progress line on ``out``: events, events/s and the share of simulated time done.

    Redrawn in place on a terminal; printed every 5 s otherwise (logs, pipes).
    """

    def __init__(self, out: IO[str], *, verb: str, cohorts: int) -> None:
        self.out = out
        self.verb = verb
        self.cohorts = cohorts
        self.interactive = out.isatty()
        self.every = 0.5 if self.interactive else 5.0
        self.start = time.monotonic()
        self.last = self.start

    def maybe(self, events: int, cohort: int, config: SimulationConfig, timestamp: str) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.show(events, cohort, config, timestamp)

    def show(
        self,
        events: int,
        cohort: int,
        config: SimulationConfig | None,
        timestamp: str | None,
        *,
        final: bool = False,
        complete: bool = False,
    ) -> None:
        seconds = time.monotonic() - self.start
        rate = events / seconds if seconds > 0 else 0.0
        text = f"{self.verb} {events:,} events  {rate:,.0f} events/s"
        if complete:
            text += "  100.0%"
        elif config is not None and timestamp is not None:
            done = _share_done(config, timestamp)
            if self.cohorts == 0:
                text += f"  cohort {cohort + 1} {done:5.1f}%"
            else:
                text += f"  {100.0 * (cohort + done / 100.0) / self.cohorts:5.1f}%"
        if self.interactive:
            self.out.write("\r\x1b[K" + text + ("\n" if final else ""))
            self.out.flush()
        else:
            print(text, file=self.out, flush=True)


def _share_done(config: SimulationConfig, timestamp: str) -> float:
    """Percentage of the cohort's simulated window before ``timestamp`` (events come in order)."""
    try:
        ts = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return 0.0
    span = config.end_ms - config.start_ms
    return max(0.0, min(100.0, 100.0 * (ts - config.start_ms) / span))


def _events(
    options: SimulateOptions,
) -> Iterator[tuple[int, SimulationConfig, dict[str, Any]]]:
    for cohort, config in enumerate(cohort_configs(options)):
        for event in simulate(config):
            yield cohort, config, event


def write_simulation(
    options: SimulateOptions,
    output: Path,
    *,
    truth: Path | None = None,
    err: IO[str] | None = None,
) -> SimulateSummary:
    """Write the events to ``output`` (JSON lines) and the ground truth to ``truth``.

    ``truth`` defaults to :func:`truth_path_for` ``(output)``; each line is one
    :class:`~intent_stream.simulate.AccountTruth` as JSON (the format of
    :func:`~intent_stream.simulate.write_jsonl`). Both files are written under a temporary
    name and renamed when complete, so an interrupted run leaves no half file behind; both
    are opened before anything is simulated, so a path that cannot be written fails at once.
    An :class:`OSError` names the path asked for, not the temporary file.
    """
    if options.cohorts == 0:
        raise ValueError("--cohorts 0 (until stopped) only makes sense when publishing")
    truth = truth if truth is not None else truth_path_for(output)
    if truth.resolve() == output.resolve():
        raise ValueError("the events and the ground truth need different files")
    check_writable(output)
    check_writable(truth)
    out = err if err is not None else sys.stderr
    progress = _Progress(out, verb="wrote", cohorts=options.cohorts)
    summary = SimulateSummary()
    started = time.monotonic()
    newline = orjson.OPT_APPEND_NEWLINE
    tmp_events, tmp_truth = _tmp_for(output), _tmp_for(truth)
    try:
        with _create(tmp_events, output) as fh, _create(tmp_truth, truth) as fh_truth:
            chunk: list[bytes] = []
            for cohort, config, event in _events(options):
                chunk.append(orjson.dumps(event, option=newline))
                summary.events += 1
                if len(chunk) >= 4096:
                    fh.write(b"".join(chunk))
                    chunk.clear()
                    progress.maybe(summary.events, cohort, config, event["timestamp"])
            fh.write(b"".join(chunk))
            summary.accounts, summary.cohorts = _dump_truth(options, fh_truth)
        _rename(tmp_events, output)
        _rename(tmp_truth, truth)
    finally:
        for tmp in (tmp_events, tmp_truth):
            tmp.unlink(missing_ok=True)
    summary.delivered = summary.events
    summary.seconds = time.monotonic() - started
    progress.show(summary.events, 0, None, None, final=True, complete=True)
    return summary


def write_truth(options: SimulateOptions, path: Path) -> int:
    """Write the ground truth of every cohort to ``path`` (atomically); return the accounts."""
    if options.cohorts == 0:
        raise ValueError("the ground truth needs a finite run (--cohorts N > 0)")
    check_writable(path)
    tmp = _tmp_for(path)
    try:
        with _create(tmp, path) as fh:
            accounts, _ = _dump_truth(options, fh)
        _rename(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return accounts


def check_writable(path: Path) -> None:
    """Refuse, before any work, a path that names a directory or lies in none.

    >>> check_writable(Path("/"))
    Traceback (most recent call last):
    ...
    ValueError: cannot write /: it is a directory
    """
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: no directory {path.parent}")


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _create(tmp: Path, final: Path) -> IO[bytes]:
    """Open ``tmp`` for writing; an error names ``final``, the file that was asked for."""
    try:
        return open(tmp, "wb")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(final)) from None


def _rename(tmp: Path, final: Path) -> None:
    try:
        os.replace(tmp, final)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(final)) from None


def _dump_truth(options: SimulateOptions, fh: IO[bytes]) -> tuple[int, int]:
    newline = orjson.OPT_APPEND_NEWLINE
    accounts = cohorts = 0
    for config in cohort_configs(options):
        truths = ground_truth(config)
        accounts += len(truths)
        cohorts += 1
        fh.write(b"".join(orjson.dumps(t, option=newline) for t in truths))
    return accounts, cohorts


def _describe(exc: BaseException) -> str:
    """``Type: message``, once (kafka-python's messages start with their type already).

    >>> _describe(TimeoutError("no answer")), _describe(ValueError("ValueError: x"))
    ('TimeoutError: no answer', 'ValueError: x')
    """
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def publish_simulation(
    options: SimulateOptions,
    *,
    settings: Settings,
    topic: str,
    partitions: int,
    err: IO[str] | None = None,
    stop: threading.Event | None = None,
    client_id: str = "intent-stream-simulate",
    producer_options: dict[str, Any] | None = None,
) -> SimulateSummary:
    """Publish the simulation to ``topic`` at ``options.rate`` events/s (or as fast as it can).

    Events are routed like the collector's and the client's records: one ``{"batch": [...]}``
    per visitor partition per flush (every :data:`TICK` seconds of pacing, or every
    :data:`FLUSH_EVENTS` events unpaced). Stops early when ``stop`` is set or on
    ``KeyboardInterrupt`` (the summary says ``interrupted``); everything queued is flushed and
    counted as delivered or failed first.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from intent_stream.client import route_records

    out = err if err is not None else sys.stderr
    stop = stop if stop is not None else threading.Event()
    options_: dict[str, Any] = {
        "linger_ms": 5,
        "acks": "all",
        "max_request_size": 4 << 20,
        # A record the broker has not acknowledged in this time fails (its errback runs), so
        # the final flush ends within it whatever happened to the broker.
        "delivery_timeout_ms": DELIVERY_TIMEOUT_MS,
    }
    options_.update(producer_options or {})
    summary = SimulateSummary()
    try:
        producer = KafkaProducer(**kafka_client_options(settings, client_id=client_id), **options_)
    except KafkaError as exc:  # the broker went away since the caller waited for it
        summary.error = _describe(exc)
        return summary
    lock = threading.Lock()

    def delivered(n: int, _metadata: Any) -> None:
        with lock:
            summary.delivered += n

    def failed(n: int, exc: BaseException) -> None:
        with lock:
            summary.failed += n
            summary.error = str(exc)

    per_flush = FLUSH_EVENTS if options.rate is None else max(1, round(options.rate * TICK))
    progress = _Progress(out, verb="sent", cohorts=options.cohorts)
    started = time.monotonic()
    cohort, config, last_ts = 0, None, None
    seen: set[int] = set()
    try:
        events = _events(options)
        while not stop.is_set() and not summary.failed:  # failed sends: the broker is gone
            chunk = []
            for cohort, config, event in itertools.islice(events, per_flush):
                chunk.append(event)
                if cohort not in seen:
                    seen.add(cohort)
                    summary.accounts += config.accounts
            if not chunk:
                break
            last_ts = chunk[-1]["timestamp"]
            for record in route_records(chunk, partitions=partitions):
                future = producer.send(
                    topic, key=record.key, value=record.value, partition=record.partition
                )
                future.add_callback(delivered, record.events)
                future.add_errback(failed, record.events)
            summary.events += len(chunk)
            if options.rate is not None:
                # Pacing is the point of --rate; the stop event wakes it early.
                ahead = started + summary.events / options.rate - time.monotonic()
                if ahead > 0:
                    stop.wait(ahead)
            if config is not None and last_ts is not None:
                progress.maybe(summary.events, cohort, config, last_ts)
        summary.interrupted = stop.is_set()
    except KeyboardInterrupt:
        summary.interrupted = True
    except KafkaError as exc:  # a send that could not even be queued (no broker for a minute)
        with lock:
            summary.error = _describe(exc)
    finally:
        try:
            producer.flush()  # bounded by the delivery timeout
        except KafkaError as exc:
            with lock:
                summary.error = summary.error or _describe(exc)
        with contextlib.suppress(KafkaError):
            producer.close(timeout=5)
    summary.cohorts = len(seen)
    summary.seconds = time.monotonic() - started
    complete = not summary.interrupted and options.cohorts > 0
    progress.show(summary.events, cohort, config, last_ts, final=True, complete=complete)
    with lock:
        undelivered = summary.events - summary.delivered - summary.failed
        if undelivered > 0:
            summary.failed += undelivered
            summary.error = summary.error or "the broker did not acknowledge in time"
    return summary
