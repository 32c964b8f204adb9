"""Stage configs: the shipped default, validation errors with file and line, `stages check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from intent_stream.cli import main
from intent_stream.scoring.stages import (
    StageConfigError,
    default_stage_model,
    load_stage_model,
    parse_stage_model,
)
from intent_stream.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FILE = REPO / "intent_stream" / "stages.default.toml"


def test_the_default_model_is_the_shipped_file_with_the_b2b_stages():
    model = default_stage_model()
    assert [s.name for s in model.stages] == [
        "awareness",
        "consideration",
        "evaluation",
        "purchase",
        "customer",
        "advocacy",
        "at_risk",
        "churned",
    ]
    assert load_stage_model(DEFAULT_FILE).stages == model.stages
    assert load_stage_model("") == model
    outcomes = {o.event: o.to for o in model.outcomes}
    assert outcomes == {
        "Opportunity Created": "purchase",
        "Deal Won": "customer",
        "Deal Lost": "consideration",
        "Subscription Cancelled": "churned",
    }
    # Every stage with enter and exit rules has its exit thresholds below the enter ones
    # for the measures both name (hysteresis), in the shipped model.
    for spec in model.stages:
        enters = {c.measure: c.threshold for r in spec.enter for c in r.clauses if ">" in c.op}
        for rule in spec.exit:
            for clause in rule.clauses:
                if clause.measure in enters and "<" in clause.op:
                    assert clause.threshold < enters[clause.measure], (spec.name, clause)


def _error(text: str) -> str:
    with pytest.raises(StageConfigError) as info:
        parse_stage_model(text, source="my.toml")
    return str(info.value)


GOOD = """\
version = 1
[[stage]]
name = "cold"
[[stage]]
name = "warm"
enter = [
  "pricing_view >= 1",
  "high_intent >= 2",
]
exit = ["high_intent < 0.5"]
"""


def test_a_small_config_parses_with_defaults():
    model = parse_stage_model(GOOD, source="my.toml")
    warm = model.stage("warm")
    assert model.initial == "cold"
    assert warm.exit_to == "cold"  # the previous stage
    assert warm.from_stages == {"cold"}
    assert model.possible_transitions() == {("none", "cold"), ("cold", "warm"), ("warm", "cold")}


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (
            GOOD.replace('"high_intent >= 2"', '"high_intnt >= 2"'),
            8,
            "unknown measure 'high_intnt'",
        ),
        (GOOD.replace('"high_intent >= 2"', '"high_intent => 2"'), 8, "cannot read"),
        (GOOD + 'exit_to = "hot"\n', 11, "exit_to names unknown stage 'hot'"),
        (GOOD + 'colour = "red"\n', 11, "unknown key 'colour'"),
        (GOOD.replace('name = "warm"', 'name = "cold"'), 5, "defined twice"),
        (GOOD.replace('name = "warm"', 'name = "Warm Leads"'), 5, "lower-case"),
        (GOOD + "dormant_days = -3\n", 11, "dormant_days must be a positive number"),
        (GOOD + 'from = ["nowhere"]\n', 11, "unknown stage 'nowhere'"),
        (GOOD + '[[outcome]]\nevent = "Deal Won"\nto = "paid"\n', 13, "to names unknown stage"),
        (GOOD + "[events.people]\nnames = ['X']\n", 11, "already a built-in measure"),
        ('initial = "hot"\n' + GOOD, 1, "initial stage 'hot' is not a stage"),
        (GOOD.replace("version = 1", "version = 2"), 1, "version must be 1"),
        (GOOD + "[model]\nhorizon_days = 0\n", 12, "horizon_days must be a positive number"),
    ],
)
def test_semantic_errors_name_the_line_and_the_problem(text, line, problem):
    message = _error(text)
    assert f"my.toml:{line}: " in message, message
    assert problem in message


def test_syntax_errors_carry_tomllib_line_and_column():
    message = _error(GOOD.replace('name = "warm"', 'name = "warm'))
    assert "my.toml:5: column" in message


def test_every_problem_is_reported_at_once_in_line_order():
    text = GOOD.replace('"high_intent >= 2"', '"nope >= 2"') + 'exit_to = "x"\n'
    lines = _error(text).splitlines()[1:]
    assert [line.split(":")[1] for line in lines] == ["8", "11"]


def test_a_config_without_stages_or_a_missing_file_is_refused():
    assert "no stages" in _error("version = 1\n")
    with pytest.raises(StageConfigError, match="cannot read the stage config"):
        load_stage_model("/nonexistent/stages.toml")


def test_stages_check_prints_the_stages(capsys):
    assert main(["stages", "check"]) == 0
    out = capsys.readouterr().out
    assert "stages.default.toml: OK, 8 stages" in out
    assert "demo_request >= 1" in out
    assert "Deal Won -> customer" in out


def test_stages_check_of_a_bad_file_exits_1_with_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('"high_intent >= 2"', '"high_intnt >= 2"'))
    assert main(["stages", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:8: stage 'warm': enter rule 'high_intnt >= 2': unknown measure" in err


def test_stages_check_reads_the_setting_when_no_file_is_given(tmp_path, capsys, monkeypatch):
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    monkeypatch.setenv("INTENT_STREAM_STAGE_CONFIG", str(good))
    assert main(["stages", "check"]) == 0
    assert f"{good}: OK, 2 stages" in capsys.readouterr().out


def test_the_transitions_topic_must_be_its_own():
    with pytest.raises(SettingsError, match="INTENT_STREAM_TRANSITIONS_TOPIC"):
        Settings(transitions_topic="intent.sales-alerts.v1")


def test_a_model_without_the_default_alert_stages_is_a_warning_not_an_error(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    assert main(["stages", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "warning: INTENT_STREAM_ALERT_STAGES names evaluation, purchase" in out
    assert main(["stages", "check", str(good), "--alert-stages", "warm"]) == 0
    assert "warning" not in capsys.readouterr().out
    assert main(["stages", "check", str(good), "--alert-stages", "wram"]) == 1
    assert "names wram, not a stage of" in capsys.readouterr().err
