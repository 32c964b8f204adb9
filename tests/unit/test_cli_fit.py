"""``intent-stream fit backtest|train`` on generated CSVs.

The main paths run as a user runs them, in a subprocess; option and error cases call
``main()`` in-process (the same code, without paying River's import per case).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from intent_stream.cli import main
from intent_stream.scoring import FitModel, load_fit_model

COLUMNS = ["lead_id", "created", "industry", "employees", "country", "plan", "stage"]
INDUSTRY = {"Software": 1.2, "Fintech": 0.7, "Healthcare": 0.0, "Retail": -1.0, "Education": -1.4}


def crm_rows(n: int = 2000, *, seed: int = 42) -> list[dict[str, str]]:
    """Seeded leads where industry and size drive conversion, with noise and messy cells."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        industry = rng.choice(list(INDUSTRY))
        employees = max(1, int(math.exp(rng.gauss(4.5, 1.5))))
        logit = -1.2 + INDUSTRY[industry] + 0.9 * (math.log10(employees) - 2) + rng.gauss(0, 0.5)
        won = rng.random() < 1 / (1 + math.exp(-logit))
        cell = f"{employees:,}" if rng.random() < 0.3 else str(employees)
        rows.append(
            {
                "lead_id": f"L{i}",
                "created": str(i + 1),
                "industry": industry if rng.random() < 0.95 else "",
                "employees": cell if rng.random() < 0.9 else "N/A",
                "country": rng.choice(["US", "UK", "DE", "FR", "IN"]),
                "plan": rng.choice(["free", "pro", "enterprise"]),
                "stage": "Closed Won" if won else "Closed Lost",
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] = COLUMNS) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "intent_stream", "fit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def fit(capsys):
    """Run ``intent-stream fit ...`` in this process."""

    def call(*args: str) -> Done:
        rc = main(["fit", *args])
        out, err = capsys.readouterr()
        return Done(rc, out, err)

    return call


@pytest.fixture(scope="module")
def crm_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("fit") / "crm.csv", crm_rows())


def backtest_json(path: Path, *extra: str, runner=run) -> dict:
    done = runner("backtest", str(path), "--label", "stage", "--positive", "closed won", *extra)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # exactly one JSON object and nothing else
    return json.loads(lines[0])


def test_backtest_json_on_a_learnable_signal(crm_csv):
    result = backtest_json(crm_csv, "--drop", "lead_id", "--json")
    assert set(result) == {"roc_auc", "pr_auc", "log_loss", "n"}
    assert result["n"] == 2000
    assert result["roc_auc"] > 0.72
    base_rate = sum(r["stage"] == "Closed Won" for r in crm_rows()) / 2000
    assert result["pr_auc"] > base_rate + 0.15
    assert 0 < result["log_loss"] < 0.69


def test_backtest_json_on_a_shuffled_label_is_near_chance(tmp_path):
    rows = crm_rows()
    stages = [r["stage"] for r in rows]
    random.Random(9).shuffle(stages)
    shuffled = [{**r, "stage": s} for r, s in zip(rows, stages, strict=True)]
    result = backtest_json(write_csv(tmp_path / "shuffled.csv", shuffled), "--json")
    assert abs(result["roc_auc"] - 0.5) < 0.07


def test_backtest_prints_a_table(crm_csv):
    done = run("backtest", str(crm_csv), "--label", "stage", "--positive", "Closed Won")
    assert done.returncode == 0, done.stderr
    for word in ("ROC AUC", "PR AUC", "log loss", "rows", "2,000"):
        assert word in done.stdout


def test_order_streams_rows_sorted_by_a_numeric_column(tmp_path, crm_csv, fit):
    rows = crm_rows()
    shuffled = rows[:]
    random.Random(4).shuffle(shuffled)
    path = write_csv(tmp_path / "shuffled.csv", shuffled)
    # "created" holds 1..2000: sorted as text ("10" < "9") the order would differ
    in_order = backtest_json(crm_csv, "--json", "--drop", "created", runner=fit)
    reordered = backtest_json(path, "--json", "--order", "created", runner=fit)
    unordered = backtest_json(path, "--json", "--drop", "created", runner=fit)
    assert reordered == in_order
    assert unordered != in_order


def test_order_by_iso_dates(tmp_path, fit):
    rows = crm_rows(300)
    for i, row in enumerate(rows):
        row["created"] = f"2025-{1 + i // 28 % 12:02d}-{1 + i % 28:02d}T{i // 336:02d}:00:00Z"
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    a = backtest_json(
        write_csv(tmp_path / "a.csv", rows), "--json", "--drop", "created", runner=fit
    )
    b = backtest_json(
        write_csv(tmp_path / "b.csv", shuffled), "--json", "--order", "created", runner=fit
    )
    assert a == b


def test_default_labels_are_understood(tmp_path, fit):
    rows = [{**r, "stage": "yes" if r["stage"] == "Closed Won" else "no"} for r in crm_rows(300)]
    done = fit("backtest", str(write_csv(tmp_path / "yn.csv", rows)), "--label", "stage")
    assert done.returncode == 0, done.stderr
    rows[7]["stage"] = "Negotiation"
    done = fit("backtest", str(write_csv(tmp_path / "bad.csv", rows)), "--label", "stage")
    assert done.returncode == 1
    assert "row 9: label 'Negotiation'" in done.stderr
    assert "--positive" in done.stderr


def test_rows_with_an_empty_label_are_skipped(tmp_path, fit):
    rows = crm_rows(200)
    for row in rows[:5]:
        row["stage"] = ""
    result = backtest_json(write_csv(tmp_path / "gaps.csv", rows), "--json", runner=fit)
    assert result["n"] == 195


def test_missing_file_is_a_clear_error(tmp_path, fit):
    done = fit("backtest", str(tmp_path / "nope.csv"), "--label", "stage")
    assert done.returncode == 1
    assert "no such file" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_label_column_lists_the_columns(crm_csv, fit):
    done = fit("backtest", str(crm_csv), "--label", "converted")
    assert done.returncode == 1
    assert "no column 'converted'" in done.stderr
    assert "lead_id, created, industry, employees, country, plan, stage" in done.stderr


def test_one_class_says_auc_is_undefined(tmp_path, fit):
    rows = [{**r, "stage": "Closed Lost"} for r in crm_rows(100)]
    path = write_csv(tmp_path / "lost.csv", rows)
    result = backtest_json(path, "--json", runner=fit)
    assert result["roc_auc"] is None
    assert result["pr_auc"] is None
    assert result["n"] == 100
    done = fit("backtest", str(path), "--label", "stage", "--positive", "Closed Won")
    assert "undefined" in done.stdout
    assert "every labelled row is negative" in done.stderr
    done = fit("train", str(path), "--label", "stage", "--output", str(tmp_path / "m.pkl"))
    assert done.returncode == 1
    assert "both classes" in done.stderr
    assert not (tmp_path / "m.pkl").exists()


def test_train_writes_a_model_the_engine_can_load(tmp_path, crm_csv):
    out = tmp_path / "models" / "fit.pkl"
    done = run(
        "train", str(crm_csv), "--label", "stage", "--positive", "Closed Won", "--output", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote fit model to {out}" in done.stdout
    assert "ROC AUC" in done.stdout
    model = load_fit_model(out)
    assert isinstance(model, FitModel)
    assert model.n_labels == 2000
    strong = {"industry": "Software", "employees": "20,000", "country": "US", "plan": "pro"}
    weak = {"industry": "Education", "employees": "3", "country": "US", "plan": "pro"}
    assert model.score_one(strong) > 81 > 50 > model.score_one(weak)


def test_train_writes_to_the_fit_model_path_setting(tmp_path, crm_csv):
    target = tmp_path / "from-env.pkl"
    done = run(
        "train",
        str(crm_csv),
        "--label",
        "stage",
        "--positive",
        "Closed Won",
        "--json",
        env={"INTENT_STREAM_FIT_MODEL_PATH": str(target)},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model_path"] == str(target)
    assert load_fit_model(target).n_labels == result["n"] == 2000


def test_semicolons_and_a_byte_order_mark_are_read(tmp_path, fit):
    rows = crm_rows(300)
    path = tmp_path / "excel.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    as_semicolons = backtest_json(path, "--json", runner=fit)
    as_commas = backtest_json(write_csv(tmp_path / "plain.csv", rows), "--json", runner=fit)
    assert as_semicolons == as_commas
    assert as_commas["n"] == 300
