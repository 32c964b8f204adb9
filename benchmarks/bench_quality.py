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

Beside the engine's score, in the same run and on the same predictions, two yardsticks:

- a naive score, the floor: the account's events in the last 30 days (what counting
  activity, with no model, gives);
- the hidden stage, the ceiling: the rank in the buying journey (out of market 0 ...
  purchase 4; customers and after 0) of the stage the generator had the account in at that
  moment, which no scorer sees. The engine's *share of the ceiling* is its ROC AUC's lift
  over chance against the hidden stage's: (AUC - 0.5) / (AUC of the hidden stage - 0.5).

Sizes: BENCH_QUALITY_ACCOUNTS (default 2000), BENCH_QUALITY_DAYS (120), BENCH_SEED (21).
Prints a table and writes benchmarks/results/quality.json.
"""

from __future__ import annotations

import os
import statistics
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from harness import write_result

from intent_stream.alerts.config import alert_policy
from intent_stream.pipeline import AccountProcessor
from intent_stream.scoring import IntentModel, ProgressiveValidation, roc_auc
from intent_stream.settings import Settings
from intent_stream.simulate import STAGES, AccountTruth, SimulationConfig, ground_truth, simulate

ACCOUNTS = int(os.environ.get("BENCH_QUALITY_ACCOUNTS", "2000"))
DAYS = float(os.environ.get("BENCH_QUALITY_DAYS", "120"))
SEED = int(os.environ.get("BENCH_SEED", "21"))
TARGET_AUC = 0.85
TARGET_LEAD_DAYS = 7.0
WARM_UP = 0.25  # share of the stream (events, or labels) left out of the prequential AUCs


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


#: The hidden stages' ranks in the buying journey; customers and after are not buying.
_JOURNEY_RANK = {stage: rank for rank, stage in enumerate(STAGES[: STAGES.index("customer")])}
_DAYS_30 = 30 * 86400.0


class Timeline:
    """An account's hidden stage over time (from its ground truth), as a journey rank."""

    def __init__(self, truth: AccountTruth) -> None:
        self.times = [_ts(at) for at, _ in truth.stages]
        self.ranks = [_JOURNEY_RANK.get(stage, 0) for _, stage in truth.stages]

    def rank(self, ts: float) -> int:
        """The rank of the stage the account was in at ``ts`` (its first before the first)."""
        return self.ranks[max(bisect_right(self.times, ts) - 1, 0)]


def alert_outcomes(
    first_alert: dict[str, float], converts_at: dict[str, float], key: Callable[[str], str]
) -> dict[str, dict[str, Any]]:
    """The accounts' first alerts grouped by ``key(account)``: per group, the true positives
    (before the account's conversion), false positives (it never converts), late alerts and
    the true positives' leads in days.

    >>> rows = alert_outcomes({"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 2 * 86400.0},
    ...                       {"a": "stage", "b": "stage", "c": "surge"}.__getitem__)
    >>> rows["stage"], rows["surge"]["false_positives"]
    ({'true_positives': 1, 'false_positives': 1, 'late_alerts': 0, 'leads': [2.0]}, 1)
    """
    out: dict[str, dict[str, Any]] = {}
    for account, at in first_alert.items():
        row = out.setdefault(key(account), no_outcomes())
        if account not in converts_at:
            row["false_positives"] += 1
        elif at < converts_at[account]:
            row["true_positives"] += 1
            row["leads"].append((converts_at[account] - at) / 86400)
        else:
            row["late_alerts"] += 1
    return dict(sorted(out.items()))


def no_outcomes() -> dict[str, Any]:
    """An :func:`alert_outcomes` row of a group without alerts."""
    return {"true_positives": 0, "false_positives": 0, "late_alerts": 0, "leads": []}


def precision_and_lead(row: dict[str, Any]) -> tuple[float | None, float | None]:
    """An :func:`alert_outcomes` row's precision and median lead in days (None if none).

    >>> precision_and_lead({"true_positives": 1, "false_positives": 3, "leads": [2.0]})
    (0.25, 2.0)
    """
    tp, fp, leads = row["true_positives"], row["false_positives"], row["leads"]
    return (tp / (tp + fp) if tp + fp else None), (statistics.median(leads) if leads else None)


def share_of_ceiling(auc: float | None, ceiling: float | None) -> float | None:
    """The lift over chance of ``auc`` as a share of the ceiling's.

    >>> share_of_ceiling(0.8, 0.9)
    0.75
    """
    if auc is None or ceiling is None or ceiling <= 0.5:
        return None
    return round((auc - 0.5) / (ceiling - 0.5), 10)


def main() -> None:
    config = SimulationConfig(accounts=ACCOUNTS, days=DAYS, seed=SEED, reveal_share=1.0)
    truth = {t.account_id: t for t in ground_truth(config)}
    converts_at = {a: _ts(t.opportunity_at) for a, t in truth.items() if t.opportunity_at}
    defaults = Settings()
    processor = AccountProcessor(
        model=IntentModel(max_blend=defaults.intent_max_blend),
        policy=alert_policy(defaults),
        health=ProgressiveValidation(window=10_000_000),  # every label, not the last 2,000
    )
    table: dict[str, object] = {}
    timelines = {a: Timeline(t) for a, t in truth.items()}
    recent: dict[str, deque[float]] = {}  # per account: event times of the last 30 days
    # Per account, the highest score before conversion (or ever, for the others): the
    # engine's, the naive count's and the hidden stage's.
    best_naive: dict[str, float] = {}
    best_hidden: dict[str, float] = {}
    per_event_naive: list[float] = []
    per_event_hidden: list[float] = []
    best: dict[str, float] = {}  # highest score before conversion (or ever, for the others)
    last: dict[str, float] = {}  # last score before conversion (or at the end)
    first_alert: dict[str, float] = {}
    first_rule: dict[str, str] = {}  # the primary rule of each account's first alert
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
            now = view.event_time
            times = recent.setdefault(account, deque())
            times.append(now)
            while times[0] < now - _DAYS_30:
                times.popleft()
            converts = converts_at.get(account, float("inf"))
            if now >= converts:
                continue  # after conversion: not a prediction any more
            naive = float(len(times))
            hidden = float(timelines[account].rank(now)) if account in timelines else 0.0
            best[account] = max(best.get(account, 0.0), view.score)
            best_naive[account] = max(best_naive.get(account, 0.0), naive)
            best_hidden[account] = max(best_hidden.get(account, 0.0), hidden)
            last[account] = view.score
            if offset >= warm:
                per_event[0].append(view.score)
                per_event[1].append(converts - now <= horizon)
                per_event_naive.append(naive)
                per_event_hidden.append(hidden)
        for alert in result.alerts:
            if alert.account_id not in first_alert:
                first_alert[alert.account_id] = _ts(orjson.loads(alert.value)["event_time"])
                first_rule[alert.account_id] = alert.rule
    seconds = time.perf_counter() - started

    scored = [a for a in truth if a in best]
    labels = [a in converts_at for a in scored]
    auc_best = roc_auc([best[a] for a in scored], labels)
    auc_last = roc_auc([last[a] for a in scored], labels)
    pairs = list(processor.health.pairs)[int(len(processor.health.pairs) * WARM_UP) :]
    auc_prequential = roc_auc([p for p, _ in pairs], [y for _, y in pairs])
    auc_per_event = roc_auc(*per_event)
    auc_naive = roc_auc([best_naive[a] for a in scored], labels)
    auc_hidden = roc_auc([best_hidden[a] for a in scored], labels)
    auc_naive_event = roc_auc(per_event_naive, per_event[1])
    auc_hidden_event = roc_auc(per_event_hidden, per_event[1])
    share = share_of_ceiling(auc_best, auc_hidden)
    share_event = share_of_ceiling(auc_per_event, auc_hidden_event)
    total = alert_outcomes(first_alert, converts_at, lambda _: "all").get("all") or no_outcomes()
    tp, fp = total["true_positives"], total["false_positives"]
    late, leads = total["late_alerts"], total["leads"]
    precision, lead = precision_and_lead(total)
    recall = tp / len(converts_at) if converts_at else None
    by_rule = {}
    for rule, row in alert_outcomes(first_alert, converts_at, first_rule.__getitem__).items():
        rule_precision, rule_lead = precision_and_lead(row)
        counts = {k: row[k] for k in ("true_positives", "false_positives", "late_alerts")}
        by_rule[rule] = {**counts, "precision": rule_precision, "median_lead_days": rule_lead}
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
        "naive_roc_auc_max": auc_naive,
        "naive_roc_auc_per_event": auc_naive_event,
        "hidden_stage_roc_auc_max": auc_hidden,
        "hidden_stage_roc_auc_per_event": auc_hidden_event,
        "share_of_ceiling_max": share,
        "share_of_ceiling_per_event": share_event,
        "alerted_accounts": len(first_alert),
        "true_positives": tp,
        "false_positives": fp,
        "late_alerts": late,
        "precision": precision,
        "recall": recall,
        "median_lead_days": lead,
        "lead_days_p25_p75": (statistics.quantiles(leads, n=4)[0::2] if len(leads) >= 2 else None),
        "by_first_rule": by_rule,
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
        ("floor: events in the last 30 d, per account", show(auc_naive, ".3f"), ""),
        ("... per event", show(auc_naive_event, ".3f"), ""),
        ("ceiling: hidden stage, per account", show(auc_hidden, ".3f"), ""),
        ("... per event", show(auc_hidden_event, ".3f"), ""),
        ("share of the ceiling's lift, per account", show(share, ".2f"), ""),
        ("... per event", show(share_event, ".2f"), ""),
        ("alert precision (every rule)", show(precision, ".3f"), ""),
        ("alert recall (alert before conversion)", show(recall, ".3f"), ""),
        ("median lead time, first alert -> conversion", show(lead, ".1f") + " d",
         f">= {TARGET_LEAD_DAYS:g} d"),
        ("alerted accounts (TP / FP / late)", f"{len(first_alert)}", f"{tp} / {fp} / "
         f"{late}"),
    ]  # fmt: skip
    for name, value, target in rows:
        print(f"{name:<44} {value:>9}  {target}")
    print(
        f"\n{'first alert by rule':<20} {'TP':>5} {'FP':>5} {'late':>5} {'precision':>9} "
        f"{'lead d':>6}"
    )
    for rule, row in result["by_first_rule"].items():
        print(
            f"{rule:<20} {row['true_positives']:>5} {row['false_positives']:>5} "
            f"{row['late_alerts']:>5} {show(row['precision'], '.3f'):>9} "
            f"{show(row['median_lead_days'], '.1f'):>6}"
        )
    write_result("quality", result)
    met = min(auc_best or 0, auc_prequential or 0) >= TARGET_AUC and (lead or 0) >= TARGET_LEAD_DAYS
    status = "ok" if met else "MISS"
    print(
        f"SUMMARY quality: ROC AUC {show(auc_best, '.3f')} per account, "
        f"{show(auc_prequential, '.3f')} prequential, {show(auc_per_event, '.3f')} per event "
        f"(naive count {show(auc_naive, '.3f')} / {show(auc_naive_event, '.3f')}, hidden stage "
        f"{show(auc_hidden, '.3f')} / {show(auc_hidden_event, '.3f')}: "
        f"{show(share, '.2f')} / {show(share_event, '.2f')} of its lift), "
        f"precision {show(precision, '.2f')}, "
        f"recall {show(recall, '.2f')}, median lead {show(lead, '.1f')} d [{status}]"
    )


if __name__ == "__main__":
    main()
