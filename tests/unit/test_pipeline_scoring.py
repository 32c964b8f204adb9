"""Delayed labels, topic surges, fit and compact state through AccountProcessor."""

from __future__ import annotations

import orjson

from intent_stream.pipeline import AccountProcessor
from intent_stream.scoring import (
    AccountSignals,
    DelayedLabels,
    FitModel,
    HotLeadPolicy,
    IntentModel,
)
from intent_stream.scoring.stages import (
    StageMachine,
    StageState,
    default_stage_model,
    parse_stage_model,
)
from tests.unit.segment import segment_event

DAY = 86400.0


def _processor(**kwargs):
    return AccountProcessor(
        model=IntentModel(),
        policy=HotLeadPolicy(enter=70, exit=50, cooldown_s=86400),
        clock=lambda: 0.0,
        **kwargs,
    )


_ev = segment_event


def _feed(proc, table, batches):
    """Each batch as the next record of partition 0 (offsets continue across calls)."""
    results = []
    for events in batches:
        offset = max((s["off"].get("e0", -1) for s in table.values()), default=-1) + 1
        value = orjson.dumps(events)
        results.append(proc.process(table, value=value, partition=0, offset=offset))
    return results


def test_outcome_labels_the_snapshots_of_the_horizon_before_it():
    proc, table = _processor(), {}
    early = _feed(proc, table, [[_ev("acme", d * DAY)] for d in (0, 4, 8, 40, 44)])
    # Days 0, 4 and 8 passed their 30-day horizon when the day-40 event arrived: negatives.
    assert early[3].labels == {"expired": 3}
    assert len(table["acme"]["snap"]) == 2
    (result,) = _feed(proc, table, [[_ev("acme", 50 * DAY, "track", event="Opportunity Created")]])
    assert result.labels == {"opportunity": 2}
    assert proc.model.n_positive == 2
    assert proc.health.n == 5
    assert "snap" not in table["acme"]


def test_snapshots_expire_as_negatives_when_the_accounts_clock_passes_the_horizon():
    proc, table = _processor(), {}
    _feed(proc, table, [[_ev("quiet", 0.0)]])
    (result,) = _feed(proc, table, [[_ev("quiet", 31 * DAY)]])
    assert result.labels == {"expired": 1}
    assert proc.model.n_labels == 1
    assert proc.model.n_positive == 0
    assert len(table["quiet"]["snap"]) == 1  # the new activity waits for its own label


def test_a_batch_spanning_slots_snapshots_each_slot():
    proc, table = _processor(), {}
    events = [_ev("acme", d * DAY) for d in (0, 1, 5, 9)]
    events.append(_ev("acme", 10 * DAY, "track", event="Deal Lost"))
    (result,) = _feed(proc, table, [events])
    assert result.labels == {"lost": 3}  # slots [0-3), [3-6), [9-12)


def test_topic_surges_are_counted_and_shown():
    proc, table = _processor(), {}
    # Months of light reading, then a burst on one topic.
    history = [
        [_ev("acme", d * DAY, path="/blog/x", properties={"path": "/blog/x"})]
        for d in range(0, 90, 10)
    ]
    burst = [
        _ev(
            "acme",
            95 * DAY + i * 3600,
            path="/blog/x",
            properties={"path": "/blog/x", "topic": "Security"},
        )
        for i in range(8)
    ]
    results = _feed(proc, table, [*history, burst])
    assert results[-1].surges == 1
    snapshot = proc.render(results[-1].snapshots["acme"])
    assert snapshot["topics"][0]["topic"] == "security"
    assert snapshot["topics"][0]["surge"] >= 60
    assert any(r["text"].startswith("surging interest in security") for r in snapshot["reasons"])
    assert snapshot["features"]["topic_surge"] > 0


def test_fit_traits_are_kept_learned_on_deals_and_shown():
    fit = FitModel(min_labels=4)
    proc, table = _processor(fit=fit), {}
    batches = []
    for i in range(16):
        industry = "software" if i % 2 else "retail"
        account = f"a{i}"
        batches.append(
            [
                _ev(
                    account,
                    0.0,
                    "group",
                    groupId=account,
                    traits={"industry": industry, "employees": 500},
                ),
                _ev(account, 60.0, "track", event="Deal Won" if i % 2 else "Deal Lost"),
            ]
        )
    _feed(proc, table, batches)
    assert fit.n_labels == 16
    assert table["a1"]["traits"] == {"industry": "software", "employees": 500}
    hot = [_ev("new", float(i), person=f"p{i}") for i in range(6)]
    hot += [
        _ev("new", 7.0, "identify", traits={"company": {"industry": "software"}}),
        _ev("new", 10.0, "track", event="Demo Requested"),
        _ev("new", 11.0, "track", event="Trial Started"),
    ]
    (result,) = _feed(proc, table, [hot])
    alert = orjson.loads(result.alerts[0].value)
    assert alert["fit_band"] in {"strong", "moderate", "weak"}
    assert alert["fit_score"] > 50  # software won in the labels
    snapshot = proc.render(result.snapshots["new"])
    assert snapshot["fit_score"] == alert["fit_score"]
    assert snapshot["traits"] == {"industry": "software"}
    assert snapshot["signals"]["demo_request"] > 0.9


def test_a_busy_accounts_state_stays_compact():
    proc, table = _processor(), {}
    topics = ["security", "analytics", "data pipelines", "governance", "ai", "cost", "cloud", "hr"]
    batches = []
    for day in range(0, 30):
        batches.append(
            [
                _ev(
                    "busy.example",
                    day * DAY + k * 60,
                    path=path,
                    person=f"person-{(day + k) % 8:02d}",
                    properties={"path": path, "topic": topics[(day + k) % len(topics)]},
                )
                for k, path in enumerate(["/pricing", "/blog/a", "/features/x", "/compare/y"])
            ]
            + [
                _ev(
                    "busy.example",
                    day * DAY + 300,
                    "group",
                    groupId="busy.example",
                    traits={
                        "industry": "Software",
                        "employees": 1200,
                        "country": "US",
                        "plan": "enterprise",
                    },
                )
            ]
        )
    _feed(proc, table, batches)
    size = len(orjson.dumps(table["busy.example"]))
    assert size <= 1700, size  # 2,030 B before the compact layout


#: An account's table value as the engine stored it before the compact layout (written by
#: that version from pages, an identify call and a demo request, stages on).
OLD_LAYOUT = (
    b'{"off":{"e0":2},"signals":{"c":{"content_view":[1.0,1795000000.0],"product_view":[1.0,'
    b'1795259200.25],"demo_request":[1.0,1795432000.5]},"p":{"ann-with-a-long-identifier-0001"'
    b':[1795000000.0,0],"bob":[1795432000.5,1,"VP Engineering"]},"d":{"20775":1,"20778":1,'
    b'"20780":1},"f":1795000000.0,"l":1795432000.5},"policy":{"a":true,"e":1,"t":1795432000.5,'
    b'"r":"stage_entry","s":53.5,"g":"evaluation","p":2},"events":4,"event_time":1795432000.5,'
    b'"score":53.51,"snap":[[1795000060,[0,0.69,0,0,0,0,0,0,0,0,0,0,0,0,2.0,1.0,0.0,0.69]],'
    b'[1795432000,[0,0.48,0.63,0,0,0,0,0,0,0,0.69,0,0,0.69,2.0,1.0,0,1.39]]],"stage":{"s":'
    b'"evaluation","t":1795432000.5,"n":2,"a":1795432000.5,"x":["evaluation",1795432000.5,'
    b'{"intent":0.54,"high_intent":0.69,"people":1.1,"velocity":1.39,"usage_trend":1.0,'
    b'"active_users":1.0}],"h":[[null,"awareness",1795000000.0,"first activity seen",0.2],'
    b'["awareness","evaluation",1795432000.5,"requested a demo (1 time recently)",0.2]]}}'
)


def test_a_state_stored_in_the_earlier_layout_loads_and_carries_on():
    old = orjson.loads(OLD_LAYOUT)
    stages = StageMachine(model=default_stage_model())
    proc, table = _processor(stages=stages), {"old.example": old}
    pricing = _ev("old.example", 5 * DAY + 3600, path="/pricing", person="bob")
    (result,) = _feed(proc, table, [[pricing]])
    assert result.skipped == 0
    new = table["old.example"]
    assert new["events"] == 5
    signals = AccountSignals.from_dict(new["signals"])
    assert sorted(signals.counts) == [
        "content_view",
        "demo_request",
        "pricing_view",
        "product_view",
    ]
    assert signals.counts["demo_request"][0] == 1.0
    assert sorted(signals.people) == ["ann-with-a-long-identifier-0001", "bob"]
    assert signals.people["bob"][1:] == [1, "VP Engineering"]
    assert signals.days == {20775: 1, 20778: 1, 20780: 2}
    stage = StageState.from_dict(new["stage"])
    assert stage.stage == "evaluation"
    assert stage.history == old["stage"]["h"]
    assert stage.advance is not None
    assert stage.advance[2] == old["stage"]["x"][2]
    labels = DelayedLabels(features=proc.labels.features)
    assert labels.decode(new["snap"][0][1]) == labels.decode(old["snap"][0][1])
    # ...and it is stored compactly from now on.
    assert isinstance(new["signals"]["d"], list)
    assert "demo_request" not in new["signals"]["c"]
    assert len(orjson.dumps(new)) < len(OLD_LAYOUT)


FIT_STAGES = """
version = 1
initial = "awareness"

[[stage]]
name = "awareness"
next = "target"

[[stage]]
name = "target"
description = "Fits the ideal customer profile."
from = ["awareness"]
enter = ["fit >= 55"]
exit = ["fit < 50"]
exit_to = "awareness"
"""


def test_stage_rules_on_fit_see_the_accounts_fit_score():
    fit = FitModel(min_labels=4)
    for i in range(16):  # software accounts won, retail ones lost
        fit.learn_one({"industry": "software" if i % 2 else "retail"}, bool(i % 2))
    assert fit.score_one({"industry": "software"}) >= 55 > fit.score_one({"industry": "retail"})
    stages = StageMachine(model=parse_stage_model(FIT_STAGES))
    proc, table = _processor(fit=fit, stages=stages), {}
    batches = [
        [
            _ev(account, 0.0, "group", groupId=account, traits={"industry": industry}),
            _ev(account, 60.0, path="/blog/x"),
        ]
        for account, industry in (("soft", "software"), ("shop", "retail"))
    ]
    results = _feed(proc, table, batches)
    moves = [(t.from_stage, t.to_stage) for t in results[0].transitions]
    assert moves == [(None, "awareness"), ("awareness", "target")]
    assert "fit" in results[0].transitions[1].reason
    assert [t.to_stage for t in results[1].transitions] == ["awareness"]
    assert table["soft"]["stage"]["s"] == "target"
    assert table["shop"]["stage"]["s"] == "awareness"
