from __future__ import annotations

import pickle

import pytest

from intent_stream.scoring import (
    FEATURES,
    CheckpointError,
    DelayedLabels,
    IntentModel,
    ProgressiveValidation,
    TopicSurge,
    dump_checkpoint,
    load_checkpoint,
)

DAY = 86400.0


def _labels() -> DelayedLabels:
    return DelayedLabels(horizon_days=30, snapshots=10, features=FEATURES)


def test_one_snapshot_per_slot_keeps_the_slots_last_state():
    labels, pending = _labels(), []
    labels.observe(pending, {"page_view": 1.0}, 0.0)
    labels.observe(pending, {"page_view": 2.0}, 1 * DAY)  # same 3-day slot: replaces
    labels.observe(pending, {"page_view": 3.0}, 4 * DAY)
    assert [labels.decode(v)["page_view"] for _, v in pending] == [2.0, 3.0]


def test_positive_outcome_labels_only_the_horizon_before_it():
    labels, pending = _labels(), []
    for day in (0, 10, 40, 55):
        labels.observe(pending, {"pricing_view": float(day + 1)}, day * DAY)
    out = labels.outcome(pending, 60 * DAY, positive=True)
    assert [(x["pricing_view"], y) for x, y in out] == [
        (1.0, False),
        (11.0, False),
        (41.0, True),
        (56.0, True),
    ]
    assert pending == []


def test_lost_deal_labels_everything_before_it_negative_and_keeps_later_snapshots():
    labels, pending = _labels(), []
    labels.observe(pending, {"demo_request": 1.0}, 0.0)
    labels.observe(pending, {"demo_request": 2.0}, 10 * DAY)
    out = labels.outcome(pending, 5 * DAY, positive=False)  # a late outcome
    assert [y for _, y in out] == [False]
    assert len(pending) == 1


def test_expiry_happens_in_event_time_only():
    labels, pending = _labels(), []
    labels.observe(pending, {"page_view": 1.0}, 0.0)
    assert not labels.due(pending, 30 * DAY)
    assert labels.due(pending, 30 * DAY + 1)
    assert labels.expire(pending, 30 * DAY + 1) == [({"page_view": 1.0}, False)]


def test_pending_snapshots_are_bounded_even_without_expiry():
    labels, pending = _labels(), []
    for slot in range(40):
        labels.observe(pending, {"page_view": 1.0}, slot * labels.spacing_s)
    assert len(pending) == labels.snapshots + 1


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="horizon_days must be positive"):
        DelayedLabels(horizon_days=0, features=FEATURES)


def test_surge_needs_evidence_and_bounds_topics():
    surge = TopicSurge(max_topics=3)
    topics: dict = {}
    surge.learn_one(topics, "a", 100 * DAY, since=0.0)
    assert surge.score(topics["a"], 100 * DAY, since=0.0) == 50.0  # one event: no evidence
    for i, topic in enumerate(["b", "c", "d", "e"]):
        surge.learn_one(topics, topic, (100 + i) * DAY, since=0.0)
    assert len(topics) == 3


def test_a_burst_on_a_new_topic_of_an_old_account_surges_once():
    surge = TopicSurge()
    topics: dict = {}
    started = [surge.learn_one(topics, "ai", 200 * DAY + i * 3600, since=0.0) for i in range(10)]
    assert started.count(True) == 1
    assert surge.top(topics, 201 * DAY, since=0.0)[0][0] == "ai"
    # A new account has no baseline: the same burst is its normal, not a surge.
    fresh: dict = {}
    for i in range(10):
        surge.learn_one(fresh, "ai", 200 * DAY + i * 3600, since=200 * DAY)
    assert surge.top(fresh, 201 * DAY, since=200 * DAY) == []


def test_progressive_validation_window_and_pickle():
    health = ProgressiveValidation(window=3)
    assert health.roc_auc() is None
    assert health.log_loss() is None
    for p, y in [(0.1, False), (0.9, True), (0.8, True), (0.2, False)]:
        health.update(p, y)
    assert health.n == 4
    assert len(health.pairs) == 3
    clone = pickle.loads(pickle.dumps(health))
    assert clone.roc_auc() == health.roc_auc() == 1.0
    clone.update(0.5, True)
    assert len(clone.pairs) == 3


def test_checkpoints_round_trip_and_refuse_other_versions():
    model = IntentModel()
    model.learn_one({"pricing_view": 1.0}, True)
    blob = dump_checkpoint("intent", {"model": model})
    assert load_checkpoint(blob, "intent")["model"].n_labels == 1
    envelope = pickle.loads(blob)
    envelope["version"] = 999
    with pytest.raises(CheckpointError, match="version 999"):
        load_checkpoint(pickle.dumps(envelope), "intent")
    with pytest.raises(CheckpointError):
        load_checkpoint(pickle.dumps({"something": "else"}), "intent")


def test_explain_gives_a_negative_reason_for_a_quiet_account():
    model = IntentModel()
    reasons = model.explain({"pricing_view": 1.4, "recency_days": 21.0})
    assert reasons[0].contribution > 0
    negative = [r for r in reasons if r.contribution < 0]
    assert [r.text for r in negative] == ["last activity 21 days ago"]
