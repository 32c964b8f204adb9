"""Fit model cost and quality on a seeded synthetic CRM export (no Kafka, no I/O).

Workload: 50,000 leads with the mess real exports have (numbers as text with separators and
currency, employee bands, empty and "N/A" cells, rare industries and countries, an id and an
e-mail column); conversion depends on industry, size, plan and title, with noise.
Prints a table and writes benchmarks/results/fit.json. Times are CPU time of this process
(``time.process_time``), so other work on a shared machine inflates them less.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from harness import write_result

from intent_stream.scoring import FitModel, backtest, roc_auc

ROWS = 50_000
INDUSTRIES = {
    "Software": 1.2,
    "Fintech": 0.9,
    "Healthcare": 0.2,
    "Manufacturing": -0.3,
    "Retail": -0.8,
    "Education": -1.0,
    "Government": -0.6,
}
RARE_INDUSTRIES = ["Mining", "Agritech", "Maritime", "Space", "Legal", "Non-profit", "Gaming"]
COUNTRIES = {"US": 0.3, "UK": 0.2, "DE": 0.1, "FR": 0.0, "IN": -0.4, "BR": -0.3}
PLANS = {"free": -0.7, "starter": 0.0, "pro": 0.6, "enterprise": 1.0}
TITLES = {"CEO": 0.5, "VP Sales": 0.8, "Head of Growth": 0.6, "Engineer": -0.2, "Student": -1.5}
BANDS = [(10, "1-10"), (50, "11-50"), (200, "51-200"), (1000, "201-1000"), (10**9, "1000+")]


def crm_rows(n: int = ROWS, *, seed: int = 42) -> list[tuple[dict[str, Any], bool, float]]:
    """``n`` seeded synthetic CRM rows as (attributes, converted, true logit without noise)."""
    rng = random.Random(seed)
    industries, countries = list(INDUSTRIES), list(COUNTRIES)
    rows = []
    for i in range(n):
        industry = rng.choice(RARE_INDUSTRIES) if rng.random() < 0.05 else rng.choice(industries)
        employees = max(1, int(math.exp(rng.gauss(4.5, 1.6))))
        revenue = employees * rng.uniform(80_000, 250_000)
        plan = rng.choice(list(PLANS))
        title = rng.choice(list(TITLES))
        country = rng.choice(countries) if rng.random() < 0.97 else f"C{rng.randrange(60)}"
        truth = (
            -2.0
            + INDUSTRIES.get(industry, 0.0)
            + 0.7 * (math.log10(employees) - 2.0)
            + PLANS[plan]
            + TITLES[title]
            + COUNTRIES.get(country, 0.0)
        )
        logit = truth + rng.gauss(0.0, 0.8)
        converted = rng.random() < 1.0 / (1.0 + math.exp(-logit))
        r = rng.random()
        if r < 0.6:
            emp: Any = str(employees)
        elif r < 0.75:
            emp = f"{employees:,}"
        elif r < 0.9:
            emp = next(label for top, label in BANDS if employees <= top)
        else:
            emp = rng.choice(["", "N/A", "null"])
        rev: Any = f"${revenue / 1e6:.1f}M" if rng.random() < 0.5 else f"{revenue:.0f}"
        if rng.random() < 0.2:
            rev = ""
        row = {
            "lead_id": f"L{i:07d}",
            "email": f"p{rng.randrange(10**9)}@example{rng.randrange(5000)}.com",
            "industry": industry if rng.random() < 0.93 else "",
            "employees": emp,
            "annual_revenue": rev,
            "country": country,
            "plan": plan.upper() if rng.random() < 0.1 else plan,
            "title": title,
            "newsletter": rng.choice(["true", "false", "TRUE", ""]),
        }
        rows.append((row, converted, truth))
    return rows


def per_row(rows: list[tuple[dict[str, Any], bool]]) -> dict[str, float]:
    """Microseconds per row of each call, on a model that has learned the first half."""
    model = FitModel()
    half = len(rows) // 2
    for x, y in rows[:half]:
        model.learn_one(x, y)
    rest = rows[half:]

    def timed(call: Any, sample: list[tuple[dict[str, Any], bool]]) -> float:
        start = time.process_time()
        for x, y in sample:
            call(x, y)
        return (time.process_time() - start) / len(sample) * 1e6

    return {
        "predict_proba_one": timed(lambda x, _: model.predict_proba_one(x), rest),
        "score_one": timed(lambda x, _: model.score_one(x), rest),
        "explain (top 3)": timed(lambda x, _: model.explain(x), rest[:5_000]),
        "learn_one": timed(model.learn_one, rest),
    }


def main() -> None:
    generated = crm_rows()
    rows = [(x, y) for x, y, _ in generated]
    start = time.process_time()
    result = backtest(rows)
    learn_predict = (time.process_time() - start) / len(rows) * 1e6
    costs = {"learn + predict (backtest)": learn_predict, **per_row(rows)}
    oracle = roc_auc([t for _, _, t in generated], [y for _, y in rows])
    positives = sum(y for _, y in rows)
    print(f"fit model, {ROWS:,} synthetic CRM rows ({positives:,} converted), seed 42")
    print(f"{'path':<28} {'us/row':>9}")
    for name, us in costs.items():
        print(f"{name:<28} {us:9.1f}")
    print("progressive validation (each row scored before it is learned)")
    metrics = result.as_dict()
    for name in ("roc_auc", "pr_auc", "log_loss"):
        print(f"{name:<28} {metrics[name]:9.3f}")
    print(f"{'n':<28} {metrics['n']:9d}")
    print(f"{'oracle roc_auc (true logit)':<28} {oracle:9.3f}")
    write_result(
        "fit", {"us_per_row": costs, "backtest": metrics, "oracle_roc_auc": oracle, "rows": ROWS}
    )
    print(
        f"SUMMARY fit: {learn_predict:.1f} us/row learn + predict, ROC AUC "
        f"{metrics['roc_auc']:.3f} (oracle {oracle:.3f})"
    )


if __name__ == "__main__":
    main()
