"""The scoring engine alone: AccountProcessor.process_batch per event, and what it produced.

No Kafka, no Redis: the engine is built as the worker builds it (``create_app``: the intent
model, the alert policy, delayed labels, the fit model and the stage machine of the default
settings; ``tune_gc`` as the worker calls it), over a ``JsonTable`` of a plain dict, with a
fixed clock. It applies the records of bench_pipeline.py's layouts (the same seeded
simulation; BENCH_ACCOUNTS and BENCH_ONE_EVENTS apply) in batches of ``score_batch_records``
cut by ``score_batch_bytes``, as the scoring agent does, with offsets counted per partition:
- batched: what the ingest agent forwards, ~100 events per record;
- one: one event per record;
each deciding per record (``score_decisions``' default), then each deciding per batch.
Each layout runs BENCH_ENGINE_RUNS times (default 3) on a fresh engine and table; the best
run's time is reported, wall-clock and CPU (the process's CPU time, which other processes on
a shared machine disturb less: compare versions by it), with the account updates it made
(each account a batch touched, read and written once) and the alerts and stage transitions
it decided.

The cost model: the batched layout deciding per batch again, in batches of
COST_BATCHES records with the byte cap lifted (``score_batch_bytes`` would cut these ~42 KB
records into batches of ~100), fitted by least squares as ``a`` us per event plus ``b`` us
per account update: what more records per batch can save, and what deciding on fewer
updates gives up (fewer alerts and transitions on a replay of history).

The fingerprint of a layout is a sha256 over everything the engine produced, in order: each
batch's RecordResult (alerts, stage transitions, dead letters, read-model views, counters),
then the final table bytes and the models' learned state. Runs must agree with each other,
and a change to the engine that is meant to be exact must leave it unchanged.

Prints a table and writes benchmarks/results/engine.json.
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

from bench_pipeline import PARTITIONS, records
from harness import write_result

from intent_stream.app import scoring_engine
from intent_stream.pipeline import AccountProcessor, AccountView, BatchRecord, chunked
from intent_stream.runner import tune_gc
from intent_stream.scoring import FitModel
from intent_stream.scoring.stages import load_stage_model
from intent_stream.settings import Settings
from intent_stream.tables import JsonTable
from intent_stream.topics import partition_for

RUNS = int(os.environ.get("BENCH_ENGINE_RUNS", "3"))
#: Records per batch of the cost model's runs (batched layout, deciding per batch).
COST_BATCHES = (100, 300, 1000)
#: The cost model's byte cap: large enough that every batch holds its records.
COST_BATCH_BYTES = 1 << 30
#: name -> (records' layout, score_decisions)
LAYOUTS = {
    "batched": ("batched", "record"),
    "one event per record": ("one", "record"),
    "batched, per batch": ("batched", "batch"),
    "one, per batch": ("one", "batch"),
}


def engine(settings: Settings) -> AccountProcessor:
    """The scoring engine as ``create_app`` wires it (a fresh fit model), with a fixed clock."""
    return scoring_engine(
        settings,
        fit=FitModel(),
        stage_model=load_stage_model(settings.stage_config),
        clock=lambda: 0.0,
    )


def account_records(layout: str) -> tuple[list[BatchRecord], int]:
    """bench_pipeline's records of ``layout`` as the scoring agent gets them:
    ``(value, partition, offset)``, offsets counted per partition from 0."""
    recs, total = records(layout)
    offsets = [0] * PARTITIONS
    out: list[BatchRecord] = []
    for partition, key, value in recs:
        p = partition_for(key, PARTITIONS) if partition is None else partition
        out.append((value, p, offsets[p]))
        offsets[p] += 1
    return out, total


def batches(recs: list[BatchRecord], settings: Settings) -> list[list[BatchRecord]]:
    """The runs ``process_batch`` gets: ``score_batch_records`` records at a time, each
    batch cut by ``score_batch_bytes`` (the scoring agent's ``chunked``)."""
    size = settings.score_batch_records
    return [
        list(run)
        for start in range(0, len(recs), size)
        for run in chunked(recs[start : start + size], settings.score_batch_bytes)
    ]


def _view(view: AccountView) -> Iterator[Any]:
    yield view.account_id, view.score, view.features, view.events, view.alerts
    yield view.event_time, view.updated_at, view.traits, view.stage, view.contributions
    yield None if view.signals is None else view.signals.to_dict()


def _counter(counts: Any) -> list[Any]:
    return sorted(counts.items())  # the metrics add them up: their order is not an output


def outputs(proc: AccountProcessor, table: JsonTable, results: list[Any]) -> Iterator[Any]:
    """Everything the engine produced, as reprs are exact (floats to the last bit)."""
    for r in results:
        yield [(a.alert_id, a.account_id, a.value, a.rule, a.interval) for a in r.alerts]
        yield [(t, t.to_payload()) for t in r.transitions]
        yield [(d.reason, d.detail, d.value, d.record) for d in r.dead_letters]
        yield [list(_view(v)) for v in r.snapshots.values()]
        yield [list(_view(v)) for v in r.refreshed.values()]
        for counts in (r.applied, r.labels, r.signals, r.marketing, r.alert_triggers):
            yield _counter(counts)
        yield r.skipped, r.surges
    yield sorted(table.raw.items())
    yield learned(proc)


def _regression(model: Any) -> tuple[Any, ...]:
    return sorted(dict(model.weights).items()), model.intercept


def learned(proc: AccountProcessor) -> list[Any]:
    """The shared models' learned state (intent, fit, stage transitions, health)."""
    intent, fit, health = proc.model, proc.fit, proc.health
    out: list[Any] = [
        (_regression(intent.model), intent.n_labels, intent.n_positive),
        (_regression(fit.model), fit.n_labels, fit.n_positive),
        (fit.numeric_stats, fit.category_counts, fit.indicator_counts),
        (list(health.pairs), health.n, health.n_positive),
    ]
    if proc.stages is not None:
        for m in (proc.stages.advance, proc.stages.churn):
            out.append((_regression(m.model), m.counts, m.n_labels, m.n_positive))
    return out


def fingerprint(proc: AccountProcessor, table: JsonTable, results: list[Any]) -> str:
    h = hashlib.sha256()
    for item in outputs(proc, table, results):
        h.update(repr(item).encode())
        h.update(b"\x1e")
    return h.hexdigest()


def decided(results: list[Any]) -> dict[str, int]:
    """Account updates (accounts written), alerts and stage transitions of a pass."""
    return {
        "account_updates": sum(len(r.snapshots) for r in results),
        "alerts": sum(len(r.alerts) for r in results),
        "transitions": sum(len(r.transitions) for r in results),
    }


def run(
    runs: list[list[BatchRecord]], settings: Settings
) -> tuple[float, float, str, dict[str, int]]:
    """One timed pass on a fresh engine and table: seconds, CPU seconds, fingerprint and
    what it decided (:func:`decided`)."""
    proc, table = engine(settings), JsonTable({})
    tune_gc()
    results = []
    start, cpu = time.perf_counter(), time.process_time()
    for batch in runs:
        results.append(proc.process_batch(table, batch))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return seconds, cpu, fingerprint(proc, table, results), decided(results)


def measure(recs: list[BatchRecord], total: int, settings: Settings, name: str) -> dict[str, Any]:
    """``RUNS`` passes over ``recs`` in ``settings``' batches: the best time, and what every
    pass produced (they must agree)."""
    runs = batches(recs, settings)
    times, cpus, prints, counts = [], [], set(), {}
    for _ in range(RUNS):
        seconds, cpu, digest, counts = run(runs, settings)
        times.append(seconds)
        cpus.append(cpu)
        prints.add(digest)
        gc.collect()
    if len(prints) != 1:
        raise SystemExit(f"{name}: runs differ in what they produced: {sorted(prints)}")
    best = min(times)
    return {
        "events": total,
        "records": len(recs),
        "batches": len(runs),
        "us_per_event": best / total * 1e6,
        "events_per_s": total / best,
        "cpu_us_per_event": min(cpus) / total * 1e6,
        "runs_s": times,
        "runs_cpu_s": cpus,
        "fingerprint": prints.pop(),
        **counts,
    }


def cost_model(points: list[tuple[int, int, float]]) -> tuple[float, float]:
    """``(a, b)`` fitted by least squares to ``(events, account updates, CPU seconds)``
    points: seconds = a * events + b * updates, both in us.

    >>> cost_model([(100, 10, 100 * 20e-6 + 10 * 150e-6), (100, 30, 100 * 20e-6 + 30 * 150e-6)])
    (20.0, 150.0)
    """
    # The normal equations of a two-parameter fit through the origin.
    see = sum(e * e for e, _, _ in points)
    suu = sum(u * u for _, u, _ in points)
    seu = sum(e * u for e, u, _ in points)
    set_ = sum(e * t for e, _, t in points)
    sut = sum(u * t for _, u, t in points)
    det = see * suu - seu * seu
    a = (set_ * suu - sut * seu) / det
    b = (sut * see - set_ * seu) / det
    return round(a * 1e6, 1), round(b * 1e6, 1)


def main() -> None:
    settings = Settings()
    rows: dict[str, dict[str, Any]] = {}
    # Each layout's records once (the cost model reads the batched ones again).
    records_of = {layout: account_records(layout) for layout, _ in LAYOUTS.values()}
    for name, (layout, decisions) in LAYOUTS.items():
        recs, total = records_of[layout]
        rows[name] = measure(recs, total, settings.replace(score_decisions=decisions), name)
    header = ("layout", "events", "records", "batches", "us/event", "cpu us", "events/s")
    print(
        "{:<24} {:>8} {:>8} {:>8} {:>9} {:>7} {:>9} {:>8} {:>7} {:>6}  fingerprint".format(
            *header, "updates", "alerts", "trans"
        )
    )
    for name, r in rows.items():
        print(
            f"{name:<24} {r['events']:8,} {r['records']:8,} {r['batches']:8,} "
            f"{r['us_per_event']:9.1f} {r['cpu_us_per_event']:7.1f} {r['events_per_s']:9,.0f} "
            f"{r['account_updates']:8,} {r['alerts']:7,} {r['transitions']:6,}  "
            f"{r['fingerprint']}"
        )

    recs, total = records_of["batched"]
    model: dict[str, Any] = {}
    print(
        f"\ncost model: batched, deciding per batch, byte cap lifted (per record: "
        f"{rows['batched']['alerts']:,} alerts, {rows['batched']['transitions']:,} transitions "
        f"in any batches)"
    )
    print("{:>8} {:>8} {:>7} {:>9} {:>7} {:>6}".format(
        "records", "batches", "cpu us", "updates", "alerts", "trans"))  # fmt: skip
    for size in COST_BATCHES:
        cost_settings = settings.replace(
            score_decisions="batch", score_batch_records=size, score_batch_bytes=COST_BATCH_BYTES
        )
        r = measure(recs, total, cost_settings, f"cost model, {size} records a batch")
        model[str(size)] = r
        print(
            f"{size:8,} {r['batches']:8,} {r['cpu_us_per_event']:7.1f} "
            f"{r['account_updates']:9,} {r['alerts']:7,} {r['transitions']:6,}"
        )
    per_event, per_update = cost_model(
        [(r["events"], r["account_updates"], min(r["runs_cpu_s"])) for r in model.values()]
    )
    print(f"fit: {per_event} us per event + {per_update} us per account update (CPU)")
    write_result(
        "engine",
        {
            **rows,
            "cost_model": {
                "batches": model,
                "us_per_event": per_event,
                "us_per_account_update": per_update,
            },
        },
    )
    batched, one = rows["batched"], rows["one event per record"]
    batched_b, one_b = rows["batched, per batch"], rows["one, per batch"]
    print(
        f"SUMMARY engine: batched {batched['us_per_event']:.1f} us/event "
        f"(cpu {batched['cpu_us_per_event']:.1f}, {batched['events_per_s']:,.0f} ev/s), "
        f"one event/record {one['us_per_event']:.1f} us/event (cpu "
        f"{one['cpu_us_per_event']:.1f}, {one['events_per_s']:,.0f} ev/s); deciding per "
        f"batch {batched_b['us_per_event']:.1f} and {one_b['us_per_event']:.1f}; cost "
        f"{per_event} us an event + {per_update} us an account update; best of "
        f"{RUNS}, in process [fingerprints {batched['fingerprint'][:12]} "
        f"{one['fingerprint'][:12]}]"
    )


if __name__ == "__main__":
    main()
