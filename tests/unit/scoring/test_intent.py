from __future__ import annotations

import pickle
import random

import pytest

from intent_stream.scoring import IntentModel, PointsPrior


def test_prior_is_monotonic_in_evidence():
    prior = PointsPrior()
    a = {"page_view": 1.0}
    b = {"page_view": 1.0, "pricing_view": 1.0}
    c = {"page_view": 1.0, "pricing_view": 1.0, "demo_request": 0.7}
    assert prior.score_one(a) < prior.score_one(b) < prior.score_one(c) <= 100


def test_blend_moves_to_the_model_as_labels_arrive():
    m = IntentModel(blend_labels=10)
    assert m.blend == 0
    for _ in range(10):
        m.learn_one({"pricing_view": 1.0}, True)
    assert m.blend == 0.5
    assert m.n_labels == 10
    assert m.n_positive == 10


def test_blend_stops_at_max_blend():
    m = IntentModel(blend_labels=10)
    for _ in range(90):
        m.learn_one({"pricing_view": 1.0}, True)
    assert m.blend == 0.5  # 90 / 100 uncapped: the default cap keeps the prior's half
    x = {"pricing_view": 1.0}
    prior = PointsPrior().score_one(x)
    assert m.score_one(x) == 0.5 * prior + 0.5 * 100.0 * m.predict_proba_one(x)
    m.max_blend = 1.0
    assert m.blend == 0.9


@pytest.mark.parametrize("max_blend", [-0.1, 1.5])
def test_max_blend_outside_0_1_is_refused(max_blend):
    with pytest.raises(ValueError, match="max_blend"):
        IntentModel(max_blend=max_blend)


def test_checkpoints_from_before_the_cap_load_with_the_default_cap():
    m = IntentModel()
    state = m.__getstate__()
    del state["max_blend"]
    restored = IntentModel.__new__(IntentModel)
    restored.__setstate__(state)
    assert restored.max_blend == 0.5


def test_model_learns_to_rank_a_separable_problem():
    rng = random.Random(1)
    m = IntentModel(blend_labels=1)
    for _ in range(2000):
        y = rng.random() < 0.5
        m.learn_one({"demo_request": rng.uniform(1, 2) if y else rng.uniform(0, 0.5)}, y)
    assert m.predict_proba_one({"demo_request": 1.8}) > 0.8
    assert m.predict_proba_one({"demo_request": 0.1}) < 0.3


def test_explain_gives_signed_reasons_in_plain_words():
    m = IntentModel()
    x = {"pricing_view": 1.4, "people": 3.0, "velocity": 1.0}
    reasons = m.explain(x, top=2)
    assert [r.feature for r in reasons] == ["pricing_view", "people"]
    assert reasons[0].text.startswith("viewed pricing")
    assert all(r.contribution > 0 for r in reasons)
    for _ in range(300):  # dormant accounts do not buy: recency gets a negative weight
        m.learn_one({"recency_days": 20.0}, False)
        m.learn_one({"pricing_view": 1.0, "recency_days": 0.5}, True)
    negative = [r for r in m.explain({"recency_days": 20.0}) if r.contribution < 0]
    assert negative
    assert negative[0].text == "last activity 20 days ago"


def test_model_pickles_with_its_learned_state():
    m = IntentModel()
    m.learn_one({"pricing_view": 1.0}, True)
    clone = pickle.loads(pickle.dumps(m))
    assert clone.n_labels == 1
    assert clone.score_one({"pricing_view": 1.0}) == m.score_one({"pricing_view": 1.0})
