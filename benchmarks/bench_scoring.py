"""Scoring cost in microseconds per event, `intent_stream.scoring` alone (no Kafka, no I/O).

Seeded workload: 2,000 accounts, 200,000 events from the journey generator's vocabulary.
Prints a table and writes benchmarks/results/scoring.json.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from intent_stream.scoring import AccountSignals, IntentModel, classify

ACCOUNTS = 2_000
EVENTS = 200_000
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
            event = {"type": "page", "properties": {"path": rng.choice(PATHS)}}
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
        x = signals.features(ts)
        model.score_one(x)
        if explain:
            model.explain(x)
    return (time.perf_counter() - start) / len(events) * 1e6


def main() -> None:
    events = workload()
    rows = {
        "classify + learn + features + score": run(events, explain=False),
        "... + explain (top 3 reasons)": run(events, explain=True),
    }
    print(f"scoring cost, {EVENTS:,} events over {ACCOUNTS:,} accounts (target <= 50 us/event)")
    print(f"{'path':<40} {'us/event':>9}")
    for name, us in rows.items():
        print(f"{name:<40} {us:9.1f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "scoring.json").write_text(json.dumps({"us_per_event": rows, "events": EVENTS}))


if __name__ == "__main__":
    main()
