from __future__ import annotations

import pytest

from intent_stream.settings import Settings, SettingsError, env_name, setting_fields


def test_defaults_are_embedded_and_loopback():
    s = Settings()
    assert s.kafka_embedded
    assert s.redis_embedded
    assert s.web_host == "127.0.0.1"


def test_environment_overrides_defaults_and_parses_types():
    s = Settings.from_env(
        {
            "INTENT_STREAM_KAFKA": "k1:9092,k2:9092",
            "INTENT_STREAM_PARTITIONS": "12",
            "INTENT_STREAM_SESSION_TIMEOUT": "7.5",
            "UNRELATED": "x",
        }
    )
    assert s.kafka == "k1:9092,k2:9092"
    assert s.partitions == 12
    assert s.session_timeout == 7.5


def test_replace_ignores_none_so_unset_flags_keep_env_values():
    s = Settings.from_env({"INTENT_STREAM_WEB_PORT": "7000"})
    assert s.replace(web_port=None, partitions=3).web_port == 7000
    assert s.replace(partitions=3).partitions == 3


def test_bad_value_names_the_variable():
    with pytest.raises(SettingsError, match="INTENT_STREAM_WEB_PORT"):
        Settings.from_env({"INTENT_STREAM_WEB_PORT": "eighty"})
    with pytest.raises(SettingsError, match="INTENT_STREAM_PARTITIONS"):
        Settings(partitions=0)
    with pytest.raises(SettingsError, match="INTENT_STREAM_ALERT_EXIT"):
        Settings(alert_enter=40, alert_exit=60)
    with pytest.raises(SettingsError, match="INTENT_STREAM_REDIS"):
        Settings(redis="localhost:6379")


def test_standby_replicas_need_a_store_that_keeps_its_offsets():
    from intent_stream.app import create_app

    with pytest.raises(SettingsError, match="INTENT_STREAM_STANDBY_REPLICAS must be 0 with"):
        Settings(standby_replicas=1)
    with pytest.raises(SettingsError, match="STANDBY_REPLICAS must be a number, 0 or"):
        Settings(standby_replicas=-1)
    assert Settings(standby_replicas=1, store="rocksdb://").standby_replicas == 1
    # Faust's own default is one standby: the worker asks for the setting's.
    engine = create_app(Settings(kafka="127.0.0.1:1", redis="redis://127.0.0.1:1/0"))
    assert engine.app.conf.table_standby_replicas == 0


def test_secrets_are_masked_everywhere_they_are_shown():
    s = Settings(redis_password="hunter2")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.masked())
    assert s.masked()["redis_password"] == "***"
    assert Settings().masked()["redis_password"] == ""


def test_every_setting_is_documented_with_a_prefixed_variable():
    for f in setting_fields():
        assert f.metadata["help"].endswith(".")
        assert env_name(f.name).startswith("INTENT_STREAM_")


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"alert_rules": "intent_threshold,hunch"}, "INTENT_STREAM_ALERT_RULES"),
        ({"alert_emails": "yes"}, "INTENT_STREAM_ALERT_EMAILS"),
        ({"alert_weak_fit_points": -1.0}, "INTENT_STREAM_ALERT_WEAK_FIT_POINTS"),
        ({"alert_weak_fit_min_score": 101.0}, "INTENT_STREAM_ALERT_WEAK_FIT_MIN_SCORE"),
        ({"alert_surge_min_score": 120.0}, "INTENT_STREAM_ALERT_SURGE_MIN_SCORE"),
        ({"alert_routes": "region=EMEA emea-team"}, "INTENT_STREAM_ALERT_ROUTES"),
        ({"memory_trim_interval": -1.0}, "INTENT_STREAM_MEMORY_TRIM_INTERVAL"),
        ({"intent_max_blend": 1.2}, "INTENT_STREAM_INTENT_MAX_BLEND"),
        ({"intent_max_blend": -0.5}, "INTENT_STREAM_INTENT_MAX_BLEND"),
        ({"score_decisions": "event"}, "INTENT_STREAM_SCORE_DECISIONS"),
    ],
)
def test_alert_settings_are_validated(changes, variable):
    with pytest.raises(SettingsError, match=variable):
        Settings(**changes)


def test_alert_settings_build_the_policy():
    from intent_stream.alerts.config import alert_policy

    env = {
        "INTENT_STREAM_ALERT_RULES": "stage_entry, topic_surge",
        "INTENT_STREAM_ALERT_STAGES": "purchase",
        "INTENT_STREAM_ALERT_WEAK_FIT_POINTS": "5",
        "INTENT_STREAM_ALERT_ROUTES": "country=FR -> paris",
        "INTENT_STREAM_ALERT_EMAILS": "show",
        "INTENT_STREAM_ALERT_SURGE_MIN_SCORE": "45",
    }
    policy = alert_policy(Settings.from_env(env))
    assert policy.rules == ("stage_entry", "topic_surge")
    assert policy.stages == ("purchase",)
    assert policy.threshold("weak") == 75.0
    assert policy.router.route({"country": "fr"}).owner == "paris"
    assert policy.show_emails is True
    assert policy.surge_min_score == 45.0
    assert alert_policy(Settings()).show_emails is False
    assert alert_policy(Settings()).surge_min_score == 30.0


@pytest.mark.parametrize("decisions", ["record", "batch"])
def test_the_worker_decides_as_score_decisions_says(decisions):
    from intent_stream.app import create_app

    settings = Settings.from_env({"INTENT_STREAM_SCORE_DECISIONS": decisions})
    engine = create_app(settings.replace(kafka="127.0.0.1:1", redis="redis://127.0.0.1:1/0"))
    assert engine.processor.decisions == decisions


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles(capsys, monkeypatch):
    from intent_stream.cli import main

    monkeypatch.setenv("INTENT_STREAM_PARTITONS", "4")
    monkeypatch.setenv("INTENT_STREAM_TANSU_BIN", "/usr/bin/true")  # not a setting, but known
    assert main(["settings"]) == 0
    err = capsys.readouterr().err
    assert (
        "INTENT_STREAM_PARTITONS is not a setting and is ignored (INTENT_STREAM_PARTITIONS?)" in err
    )
    assert "TANSU_BIN" not in err
