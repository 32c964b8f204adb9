from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from intent_stream.alerts import ReceivedAlert, cloudevent_headers, event_source
from intent_stream.alerts.envelope import InvalidAlert, human_line
from intent_stream.alerts.forward import ForwardOptions, delivered_key
from intent_stream.alerts.webhook import (
    Attempt,
    backoff_delay,
    classify,
    failure_kind,
    parse_retry_after,
    slack_message,
    webhook_body,
)
from intent_stream.cli import build_parser
from intent_stream.pipeline import AccountProcessor, iso
from intent_stream.scoring import HotLeadPolicy, IntentModel, alert_id
from intent_stream.settings import Settings, SettingsError

ALERT = {
    "alert_id": "5d1c0000000000000000000000000000",
    "account_id": "acme.com",
    "rule": "intent_threshold",
    "intent_score": 83.4,
    "threshold": 70.0,
    "episode": 1,
    "events": 27,
    "event_time": "2026-11-20T10:11:40.000Z",
    "reasons": ["5 people viewed pricing in the last 14 days", "requested a demo"],
    "since_last_alert": None,
}
REQUIRED_CE = {"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject"}


def _received(alert=ALERT, source="/intent-stream/test"):
    headers = cloudevent_headers(alert, source=source)
    return ReceivedAlert.from_record(orjson.dumps(alert), headers)


# -- CloudEvents envelope ----------------------------------------------------------------


def test_cloudevent_headers_carry_every_required_attribute_from_the_alert():
    headers = dict(cloudevent_headers(ALERT, source=event_source("prod")))
    assert set(headers) >= REQUIRED_CE
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == headers["alert_id"] == ALERT["alert_id"].encode()
    assert headers["ce_type"] == b"io.intent-stream.alert.intent_threshold"
    assert headers["ce_source"] == b"/intent-stream/prod"
    assert headers["ce_time"] == ALERT["event_time"].encode()  # event time, not wall time
    assert headers["ce_subject"] == b"acme.com"
    assert headers["content-type"] == b"application/json"
    assert all(isinstance(v, bytes) for v in headers.values())


def test_cloudevent_headers_are_deterministic_and_follow_the_rule():
    first = cloudevent_headers(ALERT, source="/s")
    assert first == cloudevent_headers(dict(ALERT), source="/s")  # replay: same headers
    surge = dict(cloudevent_headers(ALERT | {"rule": "topic_surge"}, source="/s"))
    assert surge["ce_type"] == b"io.intent-stream.alert.topic_surge"


def test_a_record_reads_back_with_its_attributes():
    received = _received()
    assert received.alert == ALERT
    assert received.alert_id == ALERT["alert_id"]
    assert received.account_id == "acme.com"
    event = received.cloud_event()
    assert event["specversion"] == "1.0"
    assert event["id"] == ALERT["alert_id"]
    assert event["subject"] == "acme.com"
    assert event["time"] == ALERT["event_time"]
    assert event["source"] == "/intent-stream/test"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == ALERT


def test_a_record_without_ce_headers_takes_its_attributes_from_the_payload():
    received = ReceivedAlert.from_record(orjson.dumps(ALERT), [("alert_id", b"x")])
    assert received.alert_id == ALERT["alert_id"]
    assert received.attributes["subject"] == "acme.com"
    assert received.attributes["time"] == ALERT["event_time"]
    assert received.attributes["type"] == "io.intent-stream.alert.intent_threshold"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"", "not JSON"),
        (None, "not JSON"),
        (b'{"account_id": "a"}', "no alert id"),
    ],
)
def test_records_that_are_no_alert_are_refused_with_a_reason(value, message):
    with pytest.raises(InvalidAlert, match=message):
        ReceivedAlert.from_record(value, [])


def test_the_human_line_shows_time_account_score_and_reasons():
    line = human_line(_received())
    assert line.startswith("2026-11-20T10:11:40.000Z")
    assert "acme.com" in line
    assert "83.4" in line
    assert "requested a demo" in line
    assert "\n" not in line


# -- webhook bodies ----------------------------------------------------------------------


def test_the_slack_message_has_a_fallback_text_and_blocks_with_score_reasons_account():
    message = slack_message(_received())
    assert "acme.com" in message["text"]
    assert "83.4" in message["text"]
    blob = orjson.dumps(message["blocks"]).decode()
    assert "acme.com" in blob
    assert "83.4 / 100" in blob
    assert "requested a demo" in blob
    assert "first alert for this account" in blob
    assert ALERT["alert_id"] in blob
    assert message["blocks"][0]["type"] == "header"


def test_the_slack_message_escapes_markup_and_respects_block_limits():
    hostile = ALERT | {"account_id": "<!channel> & " + "x" * 300, "reasons": ["<b>"] * 50}
    message = slack_message(_received(hostile))
    header = message["blocks"][0]["text"]["text"]
    assert len(header) <= 150
    why = next(b for b in message["blocks"] if b.get("text", {}).get("text", "").startswith("*Why"))
    assert "<b>" not in why["text"]["text"]
    assert why["text"]["text"].count("&lt;b&gt;") == 10  # at most ten reasons
    fields = message["blocks"][1]["fields"]
    assert "<!channel>" not in orjson.dumps(fields).decode()
    assert all(len(f["text"]) <= 2000 for f in fields)


def test_the_slack_message_says_what_is_new_since_the_last_alert():
    since = {"alert_id": "prev", "at": "2026-11-18T09:00:00.000Z", "hours": 49.2}
    blob = orjson.dumps(slack_message(_received(ALERT | {"since_last_alert": since}))).decode()
    assert "49.2 h after the previous alert" in blob


def test_the_slack_message_without_reasons_has_no_why_block():
    message = slack_message(_received(ALERT | {"reasons": []}))
    assert not any("*Why*" in orjson.dumps(b).decode() for b in message["blocks"])


def test_the_json_body_is_the_cloudevent_with_the_alert_as_data():
    body, content_type = webhook_body(_received(), "json")
    assert content_type == "application/cloudevents+json"
    event = orjson.loads(body)
    assert event["data"] == ALERT
    assert event["id"] == ALERT["alert_id"]
    assert {"ce_" + k for k in event} >= REQUIRED_CE
    slack_body, slack_type = webhook_body(_received(), "slack")
    assert slack_type == "application/json"
    assert orjson.loads(slack_body) == slack_message(_received())


# -- retry rules -------------------------------------------------------------------------


@given(st.integers(min_value=100, max_value=599))
def test_statuses_are_delivered_retried_or_dead_lettered(status):
    verdict = classify(Attempt(status=status))
    if 200 <= status < 300:
        assert verdict == "delivered"
    elif status >= 500 or status in (408, 429):
        assert verdict == "retry"
    else:
        assert verdict == "dead_letter"


@pytest.mark.parametrize("error", ["timeout", "connection"])
def test_transport_errors_are_retried(error):
    assert classify(Attempt(error=error)) == "retry"


def test_failure_kinds_are_a_small_fixed_set():
    kinds = {failure_kind(Attempt(status=s)) for s in range(300, 600)}
    kinds |= {failure_kind(Attempt(error=e)) for e in ("timeout", "connection")}
    assert kinds == {
        "http_other",
        "http_4xx",
        "http_408",
        "http_429",
        "http_5xx",
        "timeout",
        "connection",
    }


@given(
    attempt=st.integers(min_value=0, max_value=200),
    base=st.floats(min_value=0.01, max_value=5),
    cap=st.floats(min_value=0.1, max_value=600),
    r=st.floats(min_value=0, max_value=1),
)
def test_backoff_stays_between_half_the_ceiling_and_the_capped_ceiling(attempt, base, cap, r):
    ceiling = min(cap, base * 2.0**attempt)
    delay = backoff_delay(attempt, base=base, cap=cap, rand=lambda: r)
    assert ceiling / 2 - 1e-9 <= delay <= ceiling + 1e-9
    assert delay <= cap + 1e-9


def test_backoff_doubles_until_the_cap_then_stays():
    ceilings = [backoff_delay(n, base=0.5, cap=30, rand=lambda: 1.0) for n in range(10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    floors = [backoff_delay(n, base=0.5, cap=30, rand=lambda: 0.0) for n in range(10)]
    assert floors == [c / 2 for c in ceilings]


def test_backoff_honours_retry_after_up_to_the_cap():
    assert backoff_delay(0, base=1, cap=60, retry_after=20, rand=lambda: 0.5) == 20
    assert backoff_delay(0, base=1, cap=60, retry_after=600, rand=lambda: 0.5) == 60
    assert backoff_delay(5, base=1, cap=60, retry_after=1, rand=lambda: 1.0) == 32


def test_retry_after_parses_seconds_and_dates():
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412500.0) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") is None


# -- forwarder naming --------------------------------------------------------------------


def test_delivered_keys_live_under_the_prefix_and_the_scope():
    assert delivered_key("it:x:", "crm", "abc") == "it:x:alerts:delivered:crm:abc"
    assert delivered_key("p:", "slack", "abc") != delivered_key("p:", "crm", "abc")


def test_the_default_group_is_per_app_and_scope():
    s = Settings(app_id="prod")
    assert ForwardOptions().group_id(s) == "prod-alerts-forward-webhook"
    assert ForwardOptions(scope="crm").group_id(s) == "prod-alerts-forward-crm"
    assert ForwardOptions(group="mine").group_id(s) == "mine"


# -- payload: what is new since the last alert --------------------------------------------


def _hot(account, t0):
    events = [
        {
            "type": "page",
            "userId": f"p{i}",
            "timestamp": iso(t0 + i),
            "context": {"groupId": account},
            "properties": {"path": "/pricing"},
        }
        for i in range(6)
    ]
    for j, name in enumerate(["Demo Requested", "Trial Started"]):
        events.append(
            {
                "type": "track",
                "event": name,
                "userId": "p0",
                "timestamp": iso(t0 + 10 + j),
                "context": {"groupId": account},
            }
        )
    return events


def test_an_alert_links_to_the_previous_one_of_its_account():
    proc = AccountProcessor(
        model=IntentModel(), policy=HotLeadPolicy(enter=70, exit=50, cooldown_s=86400)
    )
    table: dict = {}
    t0 = 1_795_000_000.0
    first = proc.process(table, value=orjson.dumps(_hot("acme", t0)), partition=0, offset=1)
    alert1 = orjson.loads(first.alerts[0].value)
    assert alert1["since_last_alert"] is None
    # Sixty days of silence decay the score below exit (re-arm), then the account heats up.
    quiet = _hot("acme", t0 + 60 * 86400)[:1]
    assert proc.process(table, value=orjson.dumps(quiet), partition=0, offset=2).alerts == []
    later = t0 + 61 * 86400
    second = proc.process(table, value=orjson.dumps(_hot("acme", later)), partition=0, offset=3)
    alert2 = orjson.loads(second.alerts[0].value)
    since = alert2["since_last_alert"]
    assert since["alert_id"] == alert1["alert_id"] == alert_id("acme", "intent_threshold", 1)
    assert since["at"] == alert1["event_time"]
    assert since["hours"] == pytest.approx((later + 11 - (t0 + 11)) / 3600, abs=0.1)


# -- settings and CLI --------------------------------------------------------------------


def test_forwarding_settings_are_validated_without_echoing_the_url():
    with pytest.raises(SettingsError, match="INTENT_STREAM_WEBHOOK") as info:
        Settings(webhook="hooks.slack.com/services/T0/B0/s3cret")
    assert "s3cret" not in str(info.value)
    for bad in ({"webhook_timeout": 0}, {"webhook_max_backoff": -1}, {"delivered_ttl": 0}):
        with pytest.raises(SettingsError):
            Settings(**bad)
    with pytest.raises(SettingsError, match="INTENT_STREAM_ALERTS_DLQ_TOPIC"):
        Settings(alerts_dlq_topic="intent.sales-alerts.v1")
    masked = Settings(webhook="https://hooks.slack.com/services/T0/B0/s3cret").masked()
    assert masked["webhook"] == "***"


def test_the_alerts_dlq_topic_is_declared():
    from intent_stream.topics import topic_specs

    names = [t.name for t in topic_specs(Settings())]
    assert "intent.sales-alerts.dlq.v1" in names


def test_alerts_commands_parse():
    parser = build_parser()
    args = parser.parse_args(["alerts", "tail", "--json", "--from-beginning", "--group", "g"])
    assert (args.json, args.from_beginning, args.group) == (True, True, "g")
    args = parser.parse_args(
        ["alerts", "forward", "--webhook", "http://127.0.0.1:9/x", "--format", "json"]
    )
    assert args.webhook == "http://127.0.0.1:9/x"
    assert args.format == "json"
    assert args.metrics_port is None
    assert args.scope == "webhook"
    with pytest.raises(SystemExit):
        parser.parse_args(["alerts", "forward", "--format", "xml"])


def test_alerts_commands_refuse_the_embedded_broker_and_missing_webhook(capsys, monkeypatch):
    from intent_stream.cli import main

    for name in ("INTENT_STREAM_KAFKA", "INTENT_STREAM_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    assert main(["alerts", "tail"]) == 1
    assert "--kafka" in capsys.readouterr().err
