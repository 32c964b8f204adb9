from __future__ import annotations

import argparse

import pytest

from intent_stream.cli import build_parser, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "worker", "topics", "settings"):
        assert command in out


def test_every_setting_is_a_flag_on_the_worker():
    parser = build_parser()
    args = parser.parse_args(["worker", "--kafka", "k:9092", "--partitions", "3"])
    assert args.kafka == "k:9092"
    assert args.partitions == 3
    assert args.web_port is None  # unset flags leave the environment's value alone


def test_settings_command_masks_secrets(capsys, monkeypatch):
    monkeypatch.setenv("INTENT_STREAM_REDIS_PASSWORD", "hunter2")
    assert main(["settings", "--web-port", "7001"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "INTENT_STREAM_WEB_PORT" in out
    assert "7001" in out


def test_bad_setting_exits_2_with_the_variable_named(capsys, monkeypatch):
    monkeypatch.setenv("INTENT_STREAM_PARTITIONS", "many")
    assert main(["settings"]) == 2
    assert "INTENT_STREAM_PARTITIONS" in capsys.readouterr().err


def test_settings_markdown_table_has_a_row_per_setting(capsys):
    from intent_stream.settings import setting_fields

    assert main(["settings", "--markdown"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `--")]
    assert len(rows) == len(list(setting_fields()))


def test_readme_documents_every_setting():
    from pathlib import Path

    from intent_stream.settings import env_name, setting_fields

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [env_name(f.name) for f in setting_fields() if env_name(f.name) not in readme]
    assert not missing, (
        f"README lacks {missing}; regenerate with 'intent-stream settings --markdown'"
    )


def test_readme_commands_table_has_every_command():
    import argparse
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name in sub.choices if f"`intent-stream {name}" not in table]
    assert not missing, f"README's Commands table lacks {missing}"


@pytest.mark.parametrize("command", [["accounts", "top"], ["identity", "show", "u-1"]])
def test_unreachable_redis_is_an_error_that_says_what_to_check(capsys, command):
    # Port 1 on the loopback refuses at once: a real connection attempt, no server.
    assert main([*command, "--redis", "redis://user:secret@127.0.0.1:1/0"]) == 1
    err = capsys.readouterr().err
    assert "Redis at redis://user:***@127.0.0.1:1/0 failed (ConnectionError" in err
    assert "INTENT_STREAM_REDIS" in err
    assert "secret" not in err


def test_redis_commands_need_a_redis_url(capsys):
    assert main(["accounts", "top", "--redis", "embedded"]) == 2
    assert "--redis URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["alerts", "tail"], ["simulate", "--accounts", "2"]], ids=["alerts", "simulate"]
)
def test_broker_wait_follows_the_kafka_wait_setting(capsys, monkeypatch, argv):
    # --wait defaults to kafka_wait: the setting (here from the environment) bounds the wait.
    monkeypatch.setenv("INTENT_STREAM_KAFKA_WAIT", "1")
    assert main([*argv, "--kafka", "127.0.0.1:1"]) == 1
    assert "did not answer within 1s" in capsys.readouterr().err


def test_topics_list_needs_no_broker_and_create_needs_a_real_one(capsys):
    assert main(["topics", "list", "--partitions", "3"]) == 0
    out = capsys.readouterr().out
    assert "intent.events.v1" in out
    assert "account-events.v1.json" in out
    assert main(["topics", "create"]) == 2  # 'embedded' would create them on a throwaway broker
    assert "--kafka HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--accounts", "0"], "demo: --accounts must be at least 1"),
        (["demo", "--rate", "-5"], "demo: --rate must be positive"),
        (["demo", "--duration", "0"], "demo: --duration must be positive"),
    ],
)
def test_demo_refuses_options_that_would_show_nothing(capsys, argv, message):
    # Checked before anything starts: no broker, no file.
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_settings_command_hides_a_password_inside_a_url(capsys):
    assert main(["settings", "--redis", "redis://app:s3cret@cache:6379/0"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert "redis://app:***@cache:6379/0" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["settings", "--kafka-wait", "nan"],
            "INTENT_STREAM_KAFKA_WAIT (--kafka-wait) must be a number",
        ),
        (["settings", "--alert-cooldown", "-1"], "(--alert-cooldown) must be a number, 0 or more"),
        (["settings", "--kafka", "localhost:notaport"], "must be 'embedded' or host:port"),
        (["settings", "--store", "garbage://"], "INTENT_STREAM_STORE (--store) must be memory://"),
        (["settings", "--kafka-ssl-cafile", "/nonexistent/ca.pem"], "no such file"),
    ],
)
def test_settings_no_command_could_use_are_refused_at_once(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_taken_port_is_one_line_naming_the_flag_before_anything_starts(capsys):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        # Unreachable brokers: the port is checked first, so these end at once.
        assert main(["worker", "--kafka", "127.0.0.1:1", "--web-port", port]) == 1
        assert "choose another with --web-port" in capsys.readouterr().err
        argv = ["collector", "--kafka", "127.0.0.1:1", "--write-keys", "k"]
        assert main([*argv, "--collector-host", "127.0.0.1", "--collector-port", port]) == 1
        err = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in err
        assert "--collector-port" in err


def test_alerts_forward_checks_redis_before_waiting_for_the_broker(capsys):
    argv = ["alerts", "forward", "--kafka", "127.0.0.1:1", "--webhook", "http://127.0.0.1:1/h"]
    assert main([*argv, "--redis", "redis://u:pw@127.0.0.1:1/0", "--wait", "30"]) == 1
    err = capsys.readouterr().err
    assert "Redis at redis://u:***@127.0.0.1:1/0 failed" in err  # not a 30 s wait for the broker
    assert "pw" not in err


_KAFKA = ["--kafka", "127.0.0.1:1"]
_REDIS = ["--redis", "redis://127.0.0.1:1/0"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["forget", "--person", " ", *_KAFKA, *_REDIS], "forget: --person needs the person's id"),
        (["send", "x.jsonl", "--rate", "1e-300", *_KAFKA], "0.001 or more"),
        (["accounts", "top", "--n", "99999999999", *_REDIS], "--n must be between 1 and 10000"),
    ],
)
def test_arguments_no_run_could_use_exit_2(capsys, argv, message):
    # Refused before any connection (the addresses given answer nothing).
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_stages_check_refuses_alert_stages_the_model_lacks(capsys):
    assert main(["stages", "check", "--alert-stages", "evaluation,purchse"]) == 1
    err = capsys.readouterr().err
    assert "INTENT_STREAM_ALERT_STAGES names purchse, not a stage of" in err


def test_version_and_settings_errors_that_name_the_flag(capsys):
    from intent_stream import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"intent-stream {__version__}"
    assert main(["settings", "--web-port", "0"]) == 2
    assert "INTENT_STREAM_WEB_PORT (--web-port) must be a TCP port" in capsys.readouterr().err


def test_a_mistyped_value_is_reported_under_a_one_line_usage(capsys):
    # Argparse's own usage lists every flag: ~40 lines for the worker.
    with pytest.raises(SystemExit) as done:
        main(["worker", "--partitions", "many"])
    assert done.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "usage: intent-stream worker [options]",
        "intent-stream worker: error: argument --partitions: invalid int value: 'many'",
    ]
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        assert len(parser.format_usage().strip().splitlines()) == 1, name
