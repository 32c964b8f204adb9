"""Scoring cost per event and how well the intent score predicts conversions.

1. Cost in microseconds per event, `intent_stream.scoring` alone (no Kafka, no I/O): seeded
   workload of 2,000 accounts, 200,000 events from the journey generator's vocabulary
   (target: features + score <= 50 us). Beside it, in the same run, the reference the
   issue names, a hand-written per-event River loop (in process, without the Kafka
   consumer): per account a count per event name or page path decayed with a 7-day
   half-life, ``log1p`` of the counts as features, then River ``LogisticRegression``'s
   ``predict_proba_one`` and ``learn_one`` on every event (progressive validation, labels
   seeded at random: the cost does not depend on them). The ratio is its cost over ours:
   our speed as a share of its, for a score that also explains itself, tracks people,
   topics and momentum, and learns only from delayed labels.
2. ROC AUC of the intent score on the journey generator (`intent_stream.simulate`), whose
   ground truth is known: every event goes through the engine's own AccountProcessor
   (delayed labels, learning as outcomes arrive).
   - prequential (the issue's measure, target >= 0.85): the model's progressive validation,
     every delayed label scored before it is learned (the worker's model AUC gauge);
   - per event, stricter: each score after the first 30 simulated days against whether the
     account's opportunity comes within the 30-day horizon after it (all events, then only
     those before the account's opportunity).
   bench_quality.py measures the same on a larger generator run, with alerts and lead time.

Prints tables and writes benchmarks/results/scoring.json.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import orjson
from harness import write_result
from river import linear_model

from intent_stream.events import parse_timestamp
from intent_stream.pipeline import AccountProcessor
from intent_stream.scoring import AccountSignals, HotLeadPolicy, IntentModel, classify, roc_auc
from intent_stream.simulate import SimulationConfig, ground_truth, simulate

ACCOUNTS = 2_000
EVENTS = 200_000
TOPICS = ["security", "analytics", "data pipelines", "governance"]
HORIZON = 30 * 86400.0
PATHS = ["/", "/blog/a", "/docs/x", "/product", "/features/sso", "/pricing", "/compare/a-vs-b"]
TRACKS = [
    "Email Opened",
    "Whitepaper Downloaded",
    "Webinar Attended",
    "Demo Requested",
    "Trial Started",
    "Feature Used",
]


def workload(seed: int = 42) -> list[tuple[int, float, dict]]:
    rng = random.Random(seed)
    out, ts = [], 1_767_225_600.0
    for _ in range(EVENTS):
        ts += rng.expovariate(1 / 30.0)
        if rng.random() < 0.7:
            props = {"path": rng.choice(PATHS), "topic": rng.choice(TOPICS)}
            event = {"type": "page", "properties": props}
        else:
            event = {"type": "track", "event": rng.choice(TRACKS)}
        out.append((rng.randrange(ACCOUNTS), ts, event))
    return out


def run(events, *, explain: bool) -> float:
    model = IntentModel()
    state = [AccountSignals() for _ in range(ACCOUNTS)]
    start = time.perf_counter()
    for account, ts, event in events:
        signals = state[account]
        signal = classify(event)
        if signal is not None:
            signals.learn_one(signal=signal, ts=ts, person_id="p")
            topic = event.get("properties", {}).get("topic")
            if topic:
                signals.learn_topic(topic, ts)
        x = signals.features(ts)
        model.score_one(x)
        if explain:
            model.explain(x)
    return (time.perf_counter() - start) / len(events) * 1e6


def _key(event: dict[str, Any]) -> str:
    """What the reference loop counts an event as: its track name or its page's path."""
    return event.get("event") or event["properties"]["path"]


def reference_loop(events: list[tuple[int, float, dict[str, Any]]]) -> float:
    """us/event of the hand-written per-event River loop (see the docstring)."""
    model = linear_model.LogisticRegression()
    counts: list[dict[str, list[float]]] = [{} for _ in range(ACCOUNTS)]  # key -> [value, ts]
    rate = math.log(2) / (7 * 86400.0)
    labels = random.Random(3)
    log1p, exp = math.log1p, math.exp
    start = time.perf_counter()
    for account, ts, event in events:
        state = counts[account]
        key = _key(event)
        cell = state.get(key)
        state[key] = [1.0 if cell is None else cell[0] * exp(-rate * (ts - cell[1])) + 1.0, ts]
        x = {k: log1p(v * exp(-rate * (ts - at))) for k, (v, at) in state.items()}
        model.predict_proba_one(x)
        model.learn_one(x, labels.random() < 0.2)
    return (time.perf_counter() - start) / len(events) * 1e6


def prequential(accounts: int = 600, days: float = 150.0, seed: int = 7) -> dict[str, float]:
    """Prequential ROC AUC of the intent score on simulated journeys (see the docstring)."""
    config = SimulationConfig(accounts=accounts, days=days, seed=seed)
    opportunity = {
        t.account_id: parse_timestamp(t.opportunity_at) if t.opportunity_at else None
        for t in ground_truth(config)
    }
    proc = AccountProcessor(model=IntentModel(), policy=HotLeadPolicy(), clock=lambda: 0.0)
    table: dict = {}
    warm_up = config.start_ms / 1000 + HORIZON
    scores, labels, open_scores, open_labels = [], [], [], []
    spent, n = 0.0, 0
    for offset, event in enumerate(simulate(config)):
        account = event.get("context", {}).get("groupId")
        if not account:
            continue
        value = orjson.dumps(event)
        start = time.perf_counter()
        result = proc.process(table, value=value, partition=0, offset=offset)
        spent += time.perf_counter() - start
        n += 1
        view = result.snapshots.get(account)
        if view is None or view.event_time < warm_up:
            continue
        opp = opportunity[account]
        converts = opp is not None and view.event_time < opp <= view.event_time + HORIZON
        scores.append(view.score)
        labels.append(converts)
        if opp is None or opp > view.event_time:  # not yet in the sales pipeline
            open_scores.append(view.score)
            open_labels.append(converts)
    return {
        "events": n,
        "us_per_event_engine": spent / max(n, 1) * 1e6,
        "scored_after_warm_up": len(labels),
        "roc_auc_all": roc_auc(scores, labels) or float("nan"),
        "roc_auc_before_opportunity": roc_auc(open_scores, open_labels) or float("nan"),
        "delayed_labels": proc.model.n_labels,
        "delayed_label_positives": proc.model.n_positive,
        "delayed_label_roc_auc": proc.health.roc_auc() or float("nan"),
        "blend": proc.model.blend,
    }


def main() -> None:
    events = workload()
    rows = {
        "classify + learn + features + score": run(events, explain=False),
        "... + explain (top 3 reasons)": run(events, explain=True),
    }
    raw = reference_loop(events)
    cost = rows["classify + learn + features + score"]
    print(f"scoring cost, {EVENTS:,} events over {ACCOUNTS:,} accounts (target <= 50 us/event)")
    print(f"{'path':<40} {'us/event':>9}")
    for name, us in rows.items():
        print(f"{name:<40} {us:9.1f}")
    print(f"{'reference: River loop, predict + learn':<40} {raw:9.1f}")
    print(f"{'ratio to the reference (its us / ours)':<40} {raw / cost:9.2f}")
    quality = prequential()
    print()
    print("intent score on the journey generator (600 accounts, 150 days, seed 7; target >= 0.85)")
    print(f"  events applied                         {quality['events']:>9,}")
    print(f"  engine (AccountProcessor) us/event     {quality['us_per_event_engine']:9.1f}")
    print(f"  scored events after 30-day warm-up     {quality['scored_after_warm_up']:>9,}")
    print(f"  per-event ROC AUC, all events          {quality['roc_auc_all']:9.3f}")
    print(f"  ... before the account's opportunity   {quality['roc_auc_before_opportunity']:9.3f}")
    print(
        f"  delayed labels learned (positive)      {quality['delayed_labels']:>9,} "
        f"({quality['delayed_label_positives']:,})"
    )
    print(f"  prequential ROC AUC (delayed labels)   {quality['delayed_label_roc_auc']:9.3f}")
    print(f"  learned-model weight in the score      {quality['blend']:9.2f}")
    print(
        f"SUMMARY scoring: {cost:.1f} us/event "
        f"({rows['... + explain (top 3 reasons)']:.1f} with reasons; target <= 50; "
        f"{raw / cost:.2f}x the speed of a per-event River loop's {raw:.1f}), "
        f"engine {quality['us_per_event_engine']:.0f} us/event, prequential ROC AUC "
        f"{quality['delayed_label_roc_auc']:.3f} (per event {quality['roc_auc_all']:.3f})"
    )
    write_result(
        "scoring",
        {
            "us_per_event": rows,
            "reference_loop_us_per_event": raw,
            "ratio_to_reference_loop": raw / cost,
            "events": EVENTS,
            "intent_quality": quality,
        },
    )


if __name__ == "__main__":
    main()
