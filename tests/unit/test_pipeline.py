from __future__ import annotations

import orjson

from intent_stream.pipeline import AccountProcessor
from intent_stream.scoring import HotLeadPolicy, IntentModel
from tests.unit.segment import segment_event


def _processor():
    return AccountProcessor(
        model=IntentModel(),
        policy=HotLeadPolicy(enter=70, exit=50, cooldown_s=86400),
        clock=lambda: 0.0,
    )


def _ev(account, kind="page", path="/pricing", person="p1", t=0.0, **extra):
    return segment_event(account, t, kind, path, person, **extra)


def _hot(account):
    events = [_ev(account, person=f"p{i}", t=i) for i in range(6)]
    events += [
        _ev(account, "track", event="Demo Requested", t=10),
        _ev(account, "track", event="Trial Started", t=11),
    ]
    return events


def test_a_batch_updates_state_scores_and_alerts_once():
    proc, table = _processor(), {}
    result = proc.process(table, value=orjson.dumps(_hot("acme")), partition=0, offset=1)
    assert len(result.alerts) == 1
    alert = orjson.loads(result.alerts[0].value)
    assert alert["account_id"] == "acme"
    assert alert["intent_score"] >= 70
    assert alert["reasons"]
    assert table["acme"]["events"] == 8
    snapshot = proc.render(result.snapshots["acme"])
    assert snapshot["intent_score"] == alert["intent_score"]
    assert snapshot["reasons"][0]["text"]
    assert snapshot["last_event_at"].endswith("Z")
    again = proc.process(table, value=orjson.dumps(_hot("acme")), partition=0, offset=2)
    assert again.alerts == []  # disarmed until the score falls below exit


def test_replayed_records_are_skipped_not_double_counted():
    proc, table = _processor(), {}
    value = orjson.dumps([_ev("acme"), _ev("acme", t=5)])
    proc.process(table, value=value, partition=3, offset=7)
    replay = proc.process(table, value=value, partition=3, offset=7)
    assert replay.skipped == 2
    assert table["acme"]["events"] == 2
    proc.process(table, value=value, partition=3, offset=8)
    assert table["acme"]["events"] == 4


def test_a_replay_writes_the_accounts_snapshot_again_as_its_state_stands():
    # A crash can come between applying a record and writing the snapshot to Redis; the
    # replay that follows re-sends the snapshot, not scored again and not counted.
    proc, table = _processor(), {}
    proc.process(table, value=orjson.dumps(_hot("acme")), partition=0, offset=1)
    first = proc.process(table, value=orjson.dumps(_hot("acme")), partition=0, offset=2)
    replay = proc.process(table, value=orjson.dumps(_hot("acme")), partition=0, offset=1)
    assert (replay.snapshots, replay.alerts, replay.skipped) == ({}, [], 8)
    view = replay.refreshed["acme"]
    assert (view.events, view.event_time) == (16, first.snapshots["acme"].event_time)
    assert proc.render(view) == proc.render(first.snapshots["acme"])


def test_replay_gives_the_same_alert_ids():
    first = _processor().process({}, value=orjson.dumps(_hot("acme")), partition=0, offset=1)
    second = _processor().process({}, value=orjson.dumps(_hot("acme")), partition=0, offset=1)
    assert [a.alert_id for a in first.alerts] == [a.alert_id for a in second.alerts]


def test_bad_events_in_a_batch_are_dead_lettered_alone():
    proc, table = _processor(), {}
    bad = {"type": "page", "timestamp": "2026-01-01T00:00:00Z", "context": {"groupId": "x"}}
    result = proc.process(
        table, value=orjson.dumps([_ev("acme"), bad, "junk"]), partition=0, offset=1
    )
    assert [d.reason for d in result.dead_letters] == ["missing_id", "not_an_event"]
    assert orjson.loads(result.dead_letters[0].value) == bad
    assert table["acme"]["events"] == 1


def test_an_undecodable_record_is_one_dead_letter_with_its_bytes():
    result = _processor().process({}, value=b"\x00\xffgarbage", partition=0, offset=1)
    assert len(result.dead_letters) == 1
    assert result.dead_letters[0].value == b"\x00\xffgarbage"
    assert result.dead_letters[0].reason == "invalid_json"


def test_outcomes_teach_the_model():
    proc, table = _processor(), {}
    events = [
        _ev("acme"),
        _ev("acme", "track", event="Opportunity Created", t=60),
        _ev("beta", path="/blog/x"),
        _ev("beta", "track", event="Deal Lost", t=60),
    ]
    result = proc.process(table, value=orjson.dumps(events), partition=0, offset=1)
    assert result.labels == {"opportunity": 1, "lost": 1}
    assert proc.model.n_labels == 2


def test_events_of_several_accounts_in_one_record_go_to_each_account():
    proc, table = _processor(), {}
    proc.process(
        table, value=orjson.dumps([_ev("a"), _ev("b"), _ev("a", t=1)]), partition=0, offset=1
    )
    assert table["a"]["events"] == 2
    assert table["b"]["events"] == 1


def test_every_classified_signal_is_counted_by_channel_campaign_and_content_type():
    proc, table = _processor(), {}
    campaign = {"name": "Spring Launch", "source": "linkedin", "medium": "paid_social"}
    events = [
        _ev("acme", path="/pricing", context={"groupId": "acme", "campaign": campaign}),
        _ev("acme", path="/blog/x", t=1, context={"groupId": "acme", "campaign": campaign}),
        _ev("acme", "track", event="Whitepaper Downloaded", t=2),
        _ev("acme", "track", event="Email Opened", t=3, properties={"campaign_name": "Nurture"}),
        _ev("acme", "identify", t=4, traits={"seniority": "vp"}),  # no signal: not counted
        _ev("acme", "track", event="Deal Won", t=5),  # an outcome: not counted
    ]
    result = proc.process(table, value=orjson.dumps(events), partition=0, offset=1)
    assert result.marketing == {
        ("pricing_view", "paid_social", "spring_launch", "pricing"): 1,
        ("content_view", "paid_social", "spring_launch", "blog"): 1,
        ("content_download", "direct", "none", "whitepaper"): 1,
        ("email_open", "email", "nurture", "none"): 1,
    }
    assert sum(result.marketing.values()) == sum(result.signals.values())
    replay = proc.process(table, value=orjson.dumps(events), partition=0, offset=1)
    assert replay.marketing == {}  # a skipped record counts nothing
