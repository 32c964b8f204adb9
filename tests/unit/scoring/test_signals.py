from __future__ import annotations

import math

import orjson
import pytest

from intent_stream.scoring import DEFAULT_SIGNALS, AccountSignals, classify

DAY = 86400.0


@pytest.mark.parametrize(
    ("event", "signal"),
    [
        ({"type": "page", "properties": {"path": "/pricing"}}, "pricing_view"),
        (
            {"type": "page", "context": {"page": {"url": "https://x.io/vs/rival"}}},
            "comparison_view",
        ),
        ({"type": "page", "properties": {"path": "/features/sso"}}, "product_view"),
        ({"type": "page", "properties": {"path": "/blog/post"}}, "content_view"),
        ({"type": "screen", "properties": {}}, "page_view"),
        ({"type": "track", "event": "whitepaper downloaded"}, "content_download"),
        ({"type": "track", "event": "Trial Started"}, "trial_start"),
        ({"type": "track", "event": "Deal Won"}, None),
        ({"type": "track", "event": 3}, None),
        ({"type": "identify"}, None),
    ],
)
def test_classify(event, signal):
    assert classify(event) == signal


def test_decay_halves_a_count_after_one_half_life():
    s = AccountSignals()
    s.learn_one(signal="demo_request", ts=0.0)
    half = DEFAULT_SIGNALS["demo_request"].half_life_days * DAY
    assert s.count("demo_request", half) == pytest.approx(0.5)
    assert s.count("demo_request", 2 * half) == pytest.approx(0.25)


def test_late_events_count_as_if_they_arrived_in_order():
    in_order, late = AccountSignals(), AccountSignals()
    for ts in (0.0, 3 * DAY, 5 * DAY):
        in_order.learn_one(signal="pricing_view", ts=ts)
    for ts in (5 * DAY, 0.0, 3 * DAY):
        late.learn_one(signal="pricing_view", ts=ts)
    now = 6 * DAY
    assert late.count("pricing_view", now) == pytest.approx(in_order.count("pricing_view", now))


def test_unknown_signals_are_ignored():
    s = AccountSignals()
    s.learn_one(signal="nonsense", ts=0.0)
    assert s.counts == {}


def test_velocity_compares_last_week_with_the_three_before():
    s = AccountSignals()
    for day in range(0, 21, 3):
        s.learn_one(signal="page_view", ts=day * DAY)
    quiet = s.velocity(21 * DAY)
    for _ in range(10):
        s.learn_one(signal="page_view", ts=25 * DAY)
    assert s.velocity(25 * DAY) > quiet


def test_committee_breadth_counts_recent_people_and_seniority():
    s = AccountSignals()
    s.observe_person(person_id="a", ts=0.0, seniority="VP")
    s.observe_person(person_id="b", ts=0.0, seniority="individual")
    s.learn_one(signal="page_view", ts=DAY, person_id="c")
    x = s.features(2 * DAY)
    assert x["people"] == 3
    assert x["senior_people"] == 1
    assert s.features(60 * DAY)["people"] == 0


def test_state_is_compact_and_round_trips():
    s = AccountSignals()
    for i in range(40):
        s.observe_person(
            person_id=f"person-{i:04d}-anonymous-cookie", ts=i * 3600.0, seniority="vp"
        )
        for name in DEFAULT_SIGNALS:
            s.learn_one(signal=name, ts=i * 86400.0 * 0.7, person_id=f"person-{i:04d}")
    data = s.to_dict()
    assert len(orjson.dumps(data)) <= 2048
    restored = AccountSignals.from_dict(orjson.loads(orjson.dumps(data)))
    now = 40 * DAY
    for key, value in s.features(now).items():
        assert restored.features(now)[key] == pytest.approx(value, rel=1e-3)


def test_features_are_log_scaled():
    s = AccountSignals()
    for _ in range(3):
        s.learn_one(signal="pricing_view", ts=0.0)
    assert s.features(0.0)["pricing_view"] == pytest.approx(math.log1p(3))


def test_settle_is_the_state_a_table_round_trip_gives():
    import random

    rng = random.Random(5)
    s, ts = AccountSignals(), 1_795_000_000.0
    for _ in range(600):
        ts += rng.expovariate(1 / (0.8 * DAY))
        at = ts - rng.choice([0.0, 0.0, 0.0, 0.37, 2.5 * DAY, 40 * DAY])  # late events too
        s.learn_one(
            signal=rng.choice(list(DEFAULT_SIGNALS)), ts=at, person_id=f"p{rng.randrange(20)}"
        )
        s.learn_topic(rng.choice(["ai", "security", "data"]), at)
        if rng.random() < 0.1:
            s.observe_person(person_id="p1", ts=at, role=" Head  of IT ", seniority="head")
        stored = orjson.loads(orjson.dumps(s.to_dict()))
        again = AccountSignals.from_dict(stored)
        s.settle()
        assert (s.counts, s.people, s.topics, s.days, s.first_seen, s.last_seen) == (
            again.counts,
            again.people,
            again.topics,
            again.days,
            again.first_seen,
            again.last_seen,
        )
        assert list(s.days) == list(again.days)
        assert s.features(ts) == again.features(ts)
        assert orjson.dumps(s.to_dict()) == orjson.dumps(again.to_dict())
