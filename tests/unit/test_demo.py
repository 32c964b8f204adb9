"""The demo's HOT LEAD line, as pure formatting."""

from intent_stream.demo import _format_alert


def test_the_hot_lead_line_names_rules_stage_owner_and_reasons():
    line = _format_alert(
        {
            "account_id": "acme.com",
            "intent_score": 81.25,
            "rule": "stage_entry",
            "rules": ["stage_entry", "topic_surge"],
            "stage": "evaluation",
            "route": {"owner": "sales-emea", "matched": "default", "region": "EMEA"},
            "event_time": "2026-11-22T10:00:00.000Z",
            "reasons": ["3 people viewed pricing", "demo requested"],
        }
    )
    assert "acme.com" in line
    assert "81.2" in line
    assert "[stage_entry+topic_surge] stage evaluation -> sales-emea" in line
    assert "(2026-11-22)  3 people viewed pricing; demo requested" in line


def test_an_alert_from_an_older_engine_still_formats():
    line = _format_alert(
        {"account_id": "a.io", "intent_score": 70.0, "event_time": "2026-01-01T00:00:00Z"}
    )
    assert "[intent_threshold]" in line
    assert "rising intent" in line
