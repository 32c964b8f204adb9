"""Detection quality on the journey generator: ROC AUC, alert precision/recall, lead time.

Runs the engine's own scoring path, :class:`intent_stream.pipeline.AccountProcessor` (state,
decayed signals, the online intent model learning from outcome events, the hot-lead policy
with the default thresholds), in this process over ``simulate()``'s events in time order, one
event per record, with a dict as the account table: no broker, so it takes seconds. The
worker runs the very same code per record; what it adds (Kafka, identity resolution of
anonymous visitors) is measured by the other benchmarks. All events carry their account
(``reveal_share=1``), since identity resolution is not part of this path.

Ground truth (:func:`intent_stream.simulate.ground_truth`): an account *converts* when an
``Opportunity Created`` happens inside the window. Measured per account:

- ROC AUC of the highest intent score before conversion (converters) against the highest
  score over the whole window (accounts that never convert); and the same with the last
  score before conversion / at the end of the window.
- Alerts: an account's first alert is a true positive if it comes before the account's
  conversion, a false positive if the account never converts, and "late" (counted apart,
  not in precision) if it comes after the conversion. Recall = true positives / converters.
- Lead time: median days from the first alert to the conversion, over true positives.

And per prediction, after a warm-up (the first quarter of the stream):

- prequential ROC AUC: the model's own progressive validation (what the worker's
  ``intent_stream_model_roc_auc`` gauge reports): every delayed label (a feature snapshot
  that an outcome, or the end of its horizon, labelled) scored before it is learned;
- per-event ROC AUC: every score after an event, against "this account opens an
  opportunity within the horizon (30 days) of it"; a stricter view, since a converter's
  events from more than 30 days before its conversion count as negatives.

Sizes: BENCH_QUALITY_ACCOUNTS (default 2000), BENCH_QUALITY_DAYS (120), BENCH_SEED (21).
Prints a table and writes benchmarks/results/quality.json.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from datetime import datetime

import orjson
from harness import write_result

from intent_stream.pipeline import AccountProcessor
from intent_stream.scoring import HotLeadPolicy, IntentModel, ProgressiveValidation, roc_auc
from intent_stream.settings import Settings
from intent_stream.simulate import SimulationConfig, ground_truth, simulate

ACCOUNTS = int(os.environ.get("BENCH_QUALITY_ACCOUNTS", "2000"))
DAYS = float(os.environ.get("BENCH_QUALITY_DAYS", "120"))
SEED = int(os.environ.get("BENCH_SEED", "21"))
TARGET_AUC = 0.85
TARGET_LEAD_DAYS = 7.0
WARM_UP = 0.25  # share of the stream (events, or labels) left out of the prequential AUCs


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def main() -> None:
    config = SimulationConfig(accounts=ACCOUNTS, days=DAYS, seed=SEED, reveal_share=1.0)
    truth = {t.account_id: t for t in ground_truth(config)}
    converts_at = {a: _ts(t.opportunity_at) for a, t in truth.items() if t.opportunity_at}
    defaults = Settings()
    processor = AccountProcessor(
        model=IntentModel(),
        policy=HotLeadPolicy(
            enter=defaults.alert_enter, exit=defaults.alert_exit, cooldown_s=defaults.alert_cooldown
        ),
        health=ProgressiveValidation(window=10_000_000),  # every label, not the last 2,000
    )
    table: dict[str, object] = {}
    best: dict[str, float] = {}  # highest score before conversion (or ever, for the others)
    last: dict[str, float] = {}  # last score before conversion (or at the end)
    first_alert: dict[str, float] = {}
    per_event: tuple[list[float], list[bool]] = ([], [])
    horizon = defaults.intent_horizon_days * 86400
    stream = list(simulate(config))
    warm = int(len(stream) * WARM_UP)
    events = 0
    started = time.perf_counter()
    for offset, event in enumerate(stream):
        events += 1
        result = processor.process(table, value=orjson.dumps(event), partition=0, offset=offset)
        for account, view in result.snapshots.items():
            converts = converts_at.get(account, float("inf"))
            if view.event_time >= converts:
                continue  # after conversion: not a prediction any more
            best[account] = max(best.get(account, 0.0), view.score)
            last[account] = view.score
            if offset >= warm:
                per_event[0].append(view.score)
                per_event[1].append(converts - view.event_time <= horizon)
        for alert in result.alerts:
            first_alert.setdefault(alert.account_id, _ts(orjson.loads(alert.value)["event_time"]))
    seconds = time.perf_counter() - started

    scored = [a for a in truth if a in best]
    labels = [a in converts_at for a in scored]
    auc_best = roc_auc([best[a] for a in scored], labels)
    auc_last = roc_auc([last[a] for a in scored], labels)
    pairs = list(processor.health.pairs)[int(len(processor.health.pairs) * WARM_UP) :]
    auc_prequential = roc_auc([p for p, _ in pairs], [y for _, y in pairs])
    auc_per_event = roc_auc(*per_event)
    outcome: Counter[str] = Counter()
    leads = []
    for account, at in first_alert.items():
        if account not in converts_at:
            outcome["false_positive"] += 1
        elif at < converts_at[account]:
            outcome["true_positive"] += 1
            leads.append((converts_at[account] - at) / 86400)
        else:
            outcome["late"] += 1
    tp, fp = outcome["true_positive"], outcome["false_positive"]
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / len(converts_at) if converts_at else None
    lead = statistics.median(leads) if leads else None
    result = {
        "accounts": ACCOUNTS,
        "days": DAYS,
        "seed": SEED,
        "events": events,
        "events_per_s_in_process": events / seconds,
        "converting_accounts": len(converts_at),
        "accounts_with_events": len(scored),
        "roc_auc_max_score": auc_best,
        "roc_auc_last_score": auc_last,
        "roc_auc_prequential": auc_prequential,
        "prequential_labels": len(pairs),
        "roc_auc_per_event": auc_per_event,
        "per_event_scores": len(per_event[0]),
        "alerted_accounts": len(first_alert),
        "true_positives": tp,
        "false_positives": fp,
        "late_alerts": outcome["late"],
        "precision": precision,
        "recall": recall,
        "median_lead_days": lead,
        "lead_days_p25_p75": (statistics.quantiles(leads, n=4)[0::2] if len(leads) >= 2 else None),
        "model_labels": processor.model.n_labels,
        "alert_enter": defaults.alert_enter,
    }

    def show(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    print(
        f"detection quality: {ACCOUNTS:,} accounts, {DAYS:g} days, seed {SEED}: {events:,} "
        f"events in {seconds:.1f}s in process ({events / seconds:,.0f} events/s), "
        f"{len(converts_at)} converting accounts"
    )
    print(f"{'measure':<44} {'value':>9}  target")
    rows = [
        ("ROC AUC, highest score before conversion", show(auc_best, ".3f"), f">= {TARGET_AUC}"),
        ("ROC AUC, last score before conversion", show(auc_last, ".3f"), ""),
        (f"prequential ROC AUC ({len(pairs):,} labels)", show(auc_prequential, ".3f"),
         f">= {TARGET_AUC}"),
        ("per-event ROC AUC (opportunity in 30 d)", show(auc_per_event, ".3f"), ""),
        (f"alert precision (score >= {defaults.alert_enter:g})", show(precision, ".3f"), ""),
        ("alert recall (alert before conversion)", show(recall, ".3f"), ""),
        ("median lead time, first alert -> conversion", show(lead, ".1f") + " d",
         f">= {TARGET_LEAD_DAYS:g} d"),
        ("alerted accounts (TP / FP / late)", f"{len(first_alert)}", f"{tp} / {fp} / "
         f"{outcome['late']}"),
    ]  # fmt: skip
    for name, value, target in rows:
        print(f"{name:<44} {value:>9}  {target}")
    write_result("quality", result)
    met = min(auc_best or 0, auc_prequential or 0) >= TARGET_AUC and (lead or 0) >= TARGET_LEAD_DAYS
    status = "ok" if met else "MISS"
    print(
        f"SUMMARY quality: ROC AUC {show(auc_best, '.3f')} per account, "
        f"{show(auc_prequential, '.3f')} prequential, {show(auc_per_event, '.3f')} per event, "
        f"precision {show(precision, '.2f')}, "
        f"recall {show(recall, '.2f')}, median lead {show(lead, '.1f')} d [{status}]"
    )


if __name__ == "__main__":
    main()
