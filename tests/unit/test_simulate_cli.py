"""``intent-stream simulate`` to a file: deterministic output, ground truth beside it, errors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from intent_stream.cli import main
from intent_stream.simulate import SimulationConfig, ground_truth, simulate
from intent_stream.simulate_cli import (
    SimulateOptions,
    cohort_configs,
    parse_start,
    truth_path_for,
)


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["simulate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_output_is_the_simulation_byte_for_byte_and_the_same_for_a_seed(tmp_path, capsys):
    first, second, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    common = ["--accounts", "40", "--days", "20", "--reveal-share", "0.5"]
    assert _run(capsys, *common, "--seed", "9", "--output", str(first))[0] == 0
    code, out, err = _run(capsys, *common, "--seed", "9", "--output", str(second))
    assert code == 0, err
    assert _run(capsys, *common, "--seed", "10", "--output", str(other))[0] == 0

    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    config = SimulationConfig(accounts=40, days=20, seed=9, reveal_share=0.5)
    expected = list(simulate(config))
    assert _lines(first) == expected
    assert f"wrote {len(expected):,} events of 40 accounts to {second}" in out
    assert "events/s" in err  # the progress line, final state


def test_ground_truth_is_written_beside_the_events(tmp_path, capsys):
    output = tmp_path / "run.jsonl"
    code, out, _ = _run(
        capsys, "--accounts", "30", "--days", "15", "--seed", "4", "--output", str(output)
    )
    assert code == 0
    truth_path = tmp_path / "run.truth.jsonl"
    assert truth_path.is_file()
    assert str(truth_path) in out
    truth = _lines(truth_path)
    expected = ground_truth(SimulationConfig(accounts=30, days=15, seed=4))
    assert truth == [orjson.loads(orjson.dumps(t)) for t in expected]
    # The truth describes the accounts the events are about.
    accounts = {e["context"]["groupId"] for e in _lines(output)}
    assert accounts <= {t["account_id"] for t in truth}
    assert not list(tmp_path.glob(".*.tmp"))  # temporary files renamed or removed


def test_truth_goes_where_truth_says(tmp_path, capsys):
    output, truth = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    args = ["--accounts", "5", "--days", "3", "--output", str(output), "--truth", str(truth)]
    assert _run(capsys, *args)[0] == 0
    assert len(_lines(truth)) == 5
    assert not (tmp_path / "events.truth.jsonl").exists()


def test_cohorts_follow_each_other_in_time_with_the_next_seeds(tmp_path, capsys):
    output = tmp_path / "two.jsonl"
    args = ["--accounts", "10", "--days", "5", "--seed", "3", "--cohorts", "2"]
    assert _run(capsys, *args, "--start", "2026-02-01", "--output", str(output))[0] == 0
    start = datetime(2026, 2, 1, tzinfo=UTC)
    first = SimulationConfig(accounts=10, days=5, seed=3, start=start)
    second = dataclasses.replace(
        first, seed=4, start=datetime(2026, 2, 6, tzinfo=UTC), first_index=10
    )
    assert _lines(output) == list(simulate(first)) + list(simulate(second))
    assert len(_lines(tmp_path / "two.truth.jsonl")) == 20


def test_ending_now_places_the_window_before_the_current_time():
    now = datetime(2026, 11, 20, 12, 0, 0, 500_000, tzinfo=UTC)
    options = SimulateOptions(accounts=3, days=10, ending_now=True, cohorts=2)
    first, second = cohort_configs(options, now=now)
    assert first.end_ms == round(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp() * 1000)
    assert second.start_ms == first.end_ms
    assert next(cohort_configs(SimulateOptions())).start_ms == SimulationConfig().start_ms


def test_the_crm_sync_option_reaches_every_cohort(tmp_path, capsys):
    options = SimulateOptions(accounts=3, cohorts=2, crm_sync_minutes=15)
    assert [c.crm_sync_minutes for c in cohort_configs(options)] == [15, 15]
    output = tmp_path / "at-once.jsonl"
    args = ["--accounts", "40", "--days", "30", "--crm-sync-minutes", "0"]
    assert _run(capsys, *args, "--output", str(output))[0] == 0
    at_once = SimulationConfig(accounts=40, days=30, seed=42, crm_sync_minutes=0)
    assert _lines(output) == list(simulate(at_once))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "--days must be positive"),
        (["--accounts", "-1"], "--accounts must be at least 1"),
        (["--accounts", "0"], "--accounts must be at least 1"),
        (["--reveal-share", "1.5"], "--reveal-share must be between 0 and 1"),
        (["--cohorts", "-2"], "--cohorts must be 0"),
        (["--cohorts", "0"], "only makes sense when publishing"),
        (["--start", "next week"], "--start: 'next week' is not an ISO-8601 date"),
        (["--start", "2026-01-01", "--ending-now"], "not both"),
        (["--rate", "100"], "--rate paces publishing to Kafka"),
        (["--kafka", "localhost:9092"], "not both"),
        (["--days", "inf"], "--days must be positive (and finite)"),
        (["--start", "1969-06-01"], "--start must be in 2000 or later"),
        (["--start", "2999-12-25"], "--days must end the window before 3000"),
        (["--cohorts", "50", "--days", "10000"], "--days must end the window before 3000"),
        (["--wait", "-1"], "--wait must be 0 or more"),
        (["--crm-sync-minutes", "-5"], "--crm-sync-minutes must be 0 or more"),
        (["--crm-sync-minutes", "nan"], "--crm-sync-minutes must be 0 or more"),
    ],
)
def test_bad_options_exit_2_and_say_why(tmp_path, capsys, args, message):
    output = tmp_path / "x.jsonl"
    code, _, err = _run(capsys, *args, "--output", str(output))
    assert code == 2
    assert message in err
    assert not output.exists()


def test_without_output_or_broker_it_asks_for_one(capsys, monkeypatch):
    monkeypatch.delenv("INTENT_STREAM_KAFKA", raising=False)
    code, _, err = _run(capsys, "--accounts", "3")
    assert code == 2
    assert "give --output FILE.jsonl, or the broker" in err


def test_an_unwritable_output_is_an_error_not_a_traceback(tmp_path, capsys):
    code, _, err = _run(capsys, "--output", str(tmp_path / "missing" / "x.jsonl"))
    assert code == 2
    assert "no directory" in err
    same = tmp_path / "same.jsonl"
    code, _, err = _run(capsys, "--accounts", "2", "--output", str(same), "--truth", str(same))
    assert code == 2
    assert "different files" in err


def test_paths_that_cannot_be_written_fail_before_simulating_and_name_the_path(tmp_path, capsys):
    code, _, err = _run(capsys, "--output", "")
    assert (code, err.strip()) == (2, "simulate: --output and --truth need a file name")
    code, _, err = _run(capsys, "--output", str(tmp_path))
    assert (code, err.strip()) == (2, f"simulate: cannot write {tmp_path}: it is a directory")
    # /proc takes no new files, whoever asks (root included): the temporary file cannot be
    # made, and the error names the file asked for.
    code, _, err = _run(capsys, "--accounts", "2", "--output", "/proc/intent-stream.jsonl")
    assert code == 1
    assert err.startswith("simulate: cannot write /proc/intent-stream.jsonl: ")
    assert ".tmp" not in err


def test_rate_must_be_a_finite_positive_number():
    with pytest.raises(ValueError, match="--rate must be a positive number"):
        SimulateOptions(rate=float("inf"))
    with pytest.raises(ValueError, match="--rate must be a positive number"):
        SimulateOptions(rate=0)


def test_cohorts_number_their_accounts_on_so_no_two_share_an_id(tmp_path, capsys):
    output = tmp_path / "c.jsonl"
    code, _, _ = _run(capsys, "--accounts", "150", "--days", "5", "--cohorts", "4",
                      "--output", str(output))  # fmt: skip
    assert code == 0
    truth = [orjson.loads(line) for line in truth_path_for(output).read_bytes().splitlines()]
    ids = [t["account_id"] for t in truth]
    assert len(ids) == 600
    assert len(set(ids)) == 600
    # The first cohort is the simulator's own, unchanged.
    first = ground_truth(SimulationConfig(accounts=150, days=5, seed=42))
    assert ids[:150] == [t.account_id for t in first]


def test_truth_path_and_start_parsing():
    assert truth_path_for(Path("/d/run.jsonl")) == Path("/d/run.truth.jsonl")
    assert truth_path_for(Path("/d/run.ndjson")) == Path("/d/run.ndjson.truth.jsonl")
    assert parse_start("2026-05-02T10:00:00Z") == datetime(2026, 5, 2, 10, tzinfo=UTC)


def test_publishing_checks_the_truth_path_before_waiting_for_the_broker(tmp_path, capsys):
    # Nothing listens on port 1: a check after the broker wait would end in its error instead.
    argv = ["--accounts", "2", "--kafka", "127.0.0.1:1", "--wait", "30"]
    code, _, err = _run(capsys, *argv, "--truth", str(tmp_path / "missing" / "t.jsonl"))
    assert code == 2
    assert f"no directory {tmp_path / 'missing'}" in err
    code, _, err = _run(capsys, *argv, "--truth", str(tmp_path))
    assert (code, err.strip()) == (2, f"simulate: cannot write {tmp_path}: it is a directory")
