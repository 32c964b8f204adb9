from __future__ import annotations

import orjson

from intent_stream.pipeline import AccountProcessor
from intent_stream.scoring import HotLeadPolicy, IntentModel
from tests.unit.segment import segment_event


def _processor(decisions="record"):
    return AccountProcessor(
        model=IntentModel(),
        policy=HotLeadPolicy(enter=70, exit=50, cooldown_s=86400),
        clock=lambda: 0.0,
        decisions=decisions,
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


# -- batches of records (AccountProcessor.process_batch) ---------------------------------


def _record(events, offset, partition=0):
    return (orjson.dumps(events), partition, offset)


def test_a_batch_updates_each_account_once_with_the_events_of_every_record():
    one_by_one, batched = _processor(), _processor()
    records = [_record([_ev("acme", t=i), _ev("globex", t=i)], offset=i) for i in range(5)]
    table_a: dict = {}
    for value, partition, offset in records:
        one_by_one.process(table_a, value=value, partition=partition, offset=offset)
    table_b: dict = {}
    result = batched.process_batch(table_b, records)
    assert set(result.snapshots) == {"acme", "globex"}
    for account in ("acme", "globex"):
        assert table_b[account]["events"] == table_a[account]["events"] == 5
        assert table_b[account]["signals"] == table_a[account]["signals"]
        assert table_b[account]["off"] == table_a[account]["off"] == {"e0": 4}
    assert result.applied["page"] == 10


def test_a_batch_skips_records_applied_before_it_and_repeated_in_it():
    proc, table = _processor(), {}
    proc.process(table, value=orjson.dumps([_ev("acme")]), partition=2, offset=3)
    records = [
        _record([_ev("acme", t=1)], offset=3, partition=2),  # applied before the batch
        _record([_ev("acme", t=2)], offset=4, partition=2),
        _record([_ev("acme", t=2)], offset=4, partition=2),  # delivered twice in the batch
        _record([_ev("acme", t=3)], offset=5, partition=2),
    ]
    result = proc.process_batch(table, records)
    assert result.skipped == 2
    assert table["acme"]["events"] == 3
    assert table["acme"]["off"] == {"e2": 5}


def test_a_batch_of_replayed_records_refreshes_the_snapshot_without_scoring():
    proc, table = _processor(), {}
    records = [_record([_ev("acme", t=i)], offset=i) for i in range(3)]
    proc.process_batch(table, records)
    replay = proc.process_batch(table, records)
    assert (replay.snapshots, replay.skipped) == ({}, 3)
    assert replay.refreshed["acme"].events == 3


def test_dead_letters_of_a_batch_name_their_record():
    proc, table = _processor(), {}
    records = [
        _record([_ev("acme")], offset=0),
        (b"not json", 0, 1),
        _record([_ev("acme", t=1), {"type": "page", "context": {"groupId": "x"}}], offset=2),
    ]
    result = proc.process_batch(table, records)
    assert [(d.reason, d.record) for d in result.dead_letters] == [
        ("invalid_json", 1),
        (result.dead_letters[1].reason, 2),
    ]
    assert table["acme"]["events"] == 2


def test_a_forget_record_in_a_batch_removes_what_the_records_before_it_added():
    from intent_stream.privacy import ForgetRequest

    proc, table = _processor(), {}
    forget = ForgetRequest(request_id="r1", nodes=("user:p1",), partitions=1)
    records = [
        _record([_ev("acme", person="p1")], offset=0),
        (forget.to_bytes(), 0, 1),
        _record([_ev("acme", person="p2", t=1)], offset=2),
    ]
    result = proc.process_batch(table, records)
    people = table["acme"]["signals"]["p"]
    assert "p1" not in people
    assert "p2" in people
    assert table["acme"]["events"] == 2
    assert result.snapshots["acme"].events == 2


def test_each_account_is_written_in_the_partition_its_records_came_from():
    from intent_stream.tables import JsonTable

    class Changelogged(dict):
        """The parts of a Faust table JsonTable.put uses: its store and send_changelog."""

        def __init__(self):
            super().__init__()
            self.data = self
            self.sent: list[tuple[int, str]] = []

        def send_changelog(self, partition, key, value):
            self.sent.append((partition, key))

    raw = Changelogged()
    proc, table = _processor(), JsonTable(raw)
    records = [_record([_ev("acme")], offset=0, partition=1), _record([_ev("globex")], 0, 3)]
    proc.process_batch(table, records)
    assert sorted(raw.sent) == [(1, "acme"), (3, "globex")]
    assert table["acme"]["events"] == table["globex"]["events"] == 1


def test_decisions_per_batch_apply_an_accounts_events_of_the_batch_at_once():
    events = _hot("acme")
    records = [_record([e], offset=i) for i, e in enumerate(events)]
    per_batch, table = _processor("batch"), {}
    result = per_batch.process_batch(table, records)
    # The same as all the account's events in one record: one score, one decision.
    alone, expected_table = _processor("batch"), {}
    expected = alone.process(expected_table, value=orjson.dumps(events), partition=0, offset=7)
    assert [a.value for a in result.alerts] == [a.value for a in expected.alerts]
    assert len(result.alerts) == 1
    assert table == expected_table
    assert result.snapshots["acme"].score == expected.snapshots["acme"].score
    # Decided after each record, the same records score and decide eight times.
    per_record, table_r = _processor("record"), {}
    assert len(per_record.process_batch(table_r, records).alerts) == 1
    assert table_r["acme"]["events"] == table["acme"]["events"] == 8
    assert table_r["acme"]["off"] == table["acme"]["off"] == {"e0": 7}


def test_decisions_must_be_per_batch_or_per_record():
    import pytest

    with pytest.raises(ValueError, match="decisions"):
        _processor("event")


def _simulated_records():
    """Simulated journeys as trackers flush them (1 to 60 events), one record per partition
    of 2, with an undecodable record and a replayed one here and there."""
    import random

    from intent_stream.simulate import SimulationConfig, simulate
    from intent_stream.topics import partition_for

    rng = random.Random(3)
    events = list(simulate(SimulationConfig(accounts=60, days=45, seed=9)))
    records, offsets, i, flushes = [], [0, 0], 0, 0
    while i < len(events):
        flushes += 1
        n = rng.choice([1, 1, 4, 60])
        groups: dict[int, list] = {}
        for e in events[i : i + n]:
            groups.setdefault(partition_for(e["context"]["groupId"], 2), []).append(e)
        i += n
        for p, batch in groups.items():
            records.append((orjson.dumps({"batch": batch}), p, offsets[p]))
            offsets[p] += 1
        if flushes % 10 == 0:
            records.append((b"{oops", 0, offsets[0]))
            offsets[0] += 1
            records.append(rng.choice(records))
    return records


def _outputs(records, batch_sizes, decisions):
    """What an engine deciding per ``decisions`` produced from ``records`` in batches."""
    from intent_stream.alerts.config import alert_policy
    from intent_stream.scoring.stages import StageMachine, default_stage_model
    from intent_stream.settings import Settings

    proc = AccountProcessor(
        model=IntentModel(),
        policy=alert_policy(Settings()),
        clock=lambda: 0.0,
        stages=StageMachine(model=default_stage_model()),
        decisions=decisions,
    )
    table: dict = {}
    results, j = [], 0
    while j < len(records):
        size = next(batch_sizes)
        results.append(proc.process_batch(table, records[j : j + size]))
        j += size
    return (
        orjson.dumps(table, option=orjson.OPT_SORT_KEYS),
        [a.value for r in results for a in r.alerts],
        [t.to_payload() for r in results for t in r.transitions],
        [(d.reason, d.value) for r in results for d in r.dead_letters],
        sum(r.skipped for r in results),
        (proc.model.n_labels, proc.fit.n_labels, proc.health.n),
        table,
    )


def test_decisions_per_batch_apply_every_event_once_however_batched():
    records = _simulated_records()
    one_by_one = _outputs(records, iter(lambda: 1, None), "record")
    # Batches of one record decide per record.
    assert _outputs(records, iter(lambda: 1, None), "batch") == one_by_one
    for size in (7, 50):
        batched = _outputs(records, iter(lambda size=size: size, None), "batch")
        assert batched[1], f"batches of {size}: no alerts"
        assert batched[2], f"batches of {size}: no transitions"
        assert batched[3:5] == one_by_one[3:5], "dead letters and replays skipped"
        for account, state in one_by_one[6].items():
            got = batched[6][account]
            assert (got["events"], got["off"]) == (state["events"], state["off"]), account


def test_any_batching_gives_the_outputs_of_the_records_applied_one_by_one():
    records = _simulated_records()
    one_by_one = _outputs(records, iter(lambda: 1, None), "record")
    assert one_by_one[1], "the workload must produce alerts"
    assert one_by_one[2], "the workload must produce stage transitions"
    assert one_by_one[3], "the workload must produce dead letters"
    assert one_by_one[4], "the workload must replay records"
    for sizes in ([7], [50], [1, 300, 2, 13]):
        cycle = iter(sizes * len(records))
        assert _outputs(records, cycle, "record") == one_by_one, f"batches of {sizes} differ"


# -- records the ingest agent gathered from several raw records ---------------------------


def _gathered(runs):
    """A forwarded record of ``runs``: (raw partition, raw offset, events) each."""
    src = [[p, o, len(events)] for p, o, events in runs]
    batch = [e for _, _, events in runs for e in events]
    return orjson.dumps({"src": src, "batch": batch})


def test_a_gathered_record_applies_each_accounts_events_once_together():
    proc, table = _processor(), {}
    value = _gathered(
        [
            (0, 10, [_ev("acme", t=1), _ev("globex", t=1)]),
            (1, 4, [_ev("acme", t=2)]),
            (0, 11, [_ev("acme", t=3)]),
        ]
    )
    result = proc.process(table, value=value, partition=2, offset=0)
    assert table["acme"]["events"] == 3
    assert table["globex"]["events"] == 1
    assert table["acme"]["off"] == {"r0": 11, "r1": 4}
    assert set(result.snapshots) == {"acme", "globex"}
    assert result.applied["page"] == 4


def test_raw_records_gathered_again_after_an_ingest_crash_are_applied_once():
    # Before the crash: raw records 0:10 and 0:11 were forwarded together. After it the
    # ingest agent re-reads from 0:11 and gathers it with 0:12 and 1:5.
    proc, table = _processor(), {}
    first = _gathered([(0, 10, [_ev("acme", t=1)]), (0, 11, [_ev("acme", t=2)])])
    proc.process(table, value=first, partition=2, offset=0)
    again = _gathered(
        [
            (0, 11, [_ev("acme", t=2)]),
            (0, 12, [_ev("acme", t=3), _ev("acme", t=4)]),
            (1, 5, [_ev("acme", t=5)]),
        ]
    )
    result = proc.process(table, value=again, partition=2, offset=1)
    assert result.skipped == 1
    assert table["acme"]["events"] == 5  # 2 + 3: nothing twice, nothing lost
    assert table["acme"]["off"] == {"r0": 12, "r1": 5}
    replay = proc.process(table, value=again, partition=2, offset=1)
    assert replay.skipped == 4
    assert table["acme"]["events"] == 5


def test_a_gathered_record_of_one_raw_record_is_that_raw_record():
    one, gathered = _processor(), _processor()
    events = [_ev("acme", t=i) for i in range(3)]
    table_a: dict = {}
    value = orjson.dumps({"src": [0, 7], "batch": events})
    one.process(table_a, value=value, partition=1, offset=0)
    table_b: dict = {}
    gathered.process(table_b, value=_gathered([(0, 7, events)]), partition=1, offset=0)
    assert table_a == table_b
