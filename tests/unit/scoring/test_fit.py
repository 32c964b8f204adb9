from __future__ import annotations

import math
import pickle
import random

import pytest

from intent_stream.scoring import (
    FitModel,
    FitModelError,
    fit_band,
    load_fit_model,
    save_fit_model,
)
from intent_stream.scoring.fit import parse_number

INDUSTRY_RATE = {"Software": 0.6, "Fintech": 0.4, "Retail": 0.1}


def trained(n: int = 1200, *, seed: int = 7, **kwargs) -> FitModel:
    """Industry and size drive conversion (with noise)."""
    rng = random.Random(seed)
    model = FitModel(**kwargs)
    for _ in range(n):
        industry = rng.choice(list(INDUSTRY_RATE))
        employees = rng.choice([20, 200, 2000, 20000])
        p = INDUSTRY_RATE[industry] + (0.25 if employees >= 2000 else 0.0)
        model.learn_one({"industry": industry, "employees": employees}, rng.random() < p)
    return model


def test_neutral_prior_until_enough_labels_of_both_classes():
    m = FitModel(min_labels=10)
    x = {"industry": "Software", "employees": 500}
    for _ in range(30):  # many labels, but one class only: still nothing to learn from
        m.learn_one(x, True)
    assert not m.ready
    assert m.score_one(x) == 50.0
    assert m.predict_proba_one(x) == pytest.approx(31 / 32)  # the smoothed base rate
    assert m.explain(x) == []
    m.learn_one({"industry": "Retail"}, False)
    assert m.ready
    assert m.score_one(x) != 50.0


@pytest.mark.parametrize("missing", [None, "", "  ", "NA", "n/a", "null", "NULL", "nan", "-"])
def test_missing_values_are_an_indicator_with_no_numeric_part(missing):
    m = trained()
    features = m.features({"employees": missing})
    assert features == {"employees=(missing)": 1.0}


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_missing(number):
    assert FitModel().features({"revenue": number}) == {"revenue=(missing)": 1.0}


def test_numbers_are_inferred_from_text_log_scaled_and_clipped():
    m = FitModel()
    rng = random.Random(3)
    for _ in range(500):
        m.learn_one({"employees": int(math.exp(rng.gauss(5, 1.5)))}, rng.random() < 0.3)
    as_text = m.features({"employees": "1,200"})
    as_number = m.features({"employees": 1200})
    assert as_text == as_number
    assert set(as_text) == {"employees"}  # numeric: one feature named after the column
    mean = math.exp(m.numeric_stats["employees"][1]) - 1
    assert abs(m.features({"employees": mean})["employees"]) < 1e-9
    assert (
        m.features({"employees": 10**6})["employees"] > m.features({"employees": 5000})["employees"]
    )
    # an absurd outlier is clipped instead of dominating the logit
    assert m.features({"employees": 1e30})["employees"] == m.clip


def test_a_constant_numeric_column_does_not_divide_by_zero():
    m = FitModel(min_labels=2)
    for i in range(100):
        m.learn_one({"seats": 5, "plan": "pro"}, i % 2 == 0)
    assert m.features({"seats": 5}) == {"seats": 0.0}
    assert m.features({"seats": 50}) == {"seats": 0.0}
    assert 0.0 <= m.score_one({"seats": 5000}) <= 100.0


def test_categories_are_one_hot_case_and_space_insensitive_after_min_count():
    m = FitModel(min_count=3)
    assert m.features({"industry": "Software"}) == {"industry=(other)": 1.0}
    for value in ("Software", " software", "SOFTWARE "):
        m.learn_one({"industry": value}, True)
    assert m.features({"industry": "software"}) == {"industry=software": 1.0}
    assert m.features({"industry": "Mining"}) == {"industry=(other)": 1.0}


def test_booleans_and_their_text_are_the_same_category():
    m = FitModel(min_count=1)
    m.learn_one({"is_customer": True}, True)
    m.learn_one({"is_customer": "false"}, False)
    assert m.features({"is_customer": "TRUE"}) == {"is_customer=true": 1.0}
    assert m.features({"is_customer": False}) == {"is_customer=false": 1.0}


def test_ranges_and_codes_stay_categories_and_nested_values_are_ignored():
    m = FitModel(min_count=1)
    m.learn_one({"employees": "51-200", "tags": ["a", "b"], "address": {"city": "X"}}, True)
    assert m.features({"employees": "51-200", "tags": ["a"], "address": {}}) == {
        "employees=51-200": 1.0
    }


def test_id_like_columns_are_bounded():
    m = FitModel(max_categories=50, min_count=1)
    for i in range(1000):
        m.learn_one({"lead_id": f"L{i:05d}"}, i % 3 == 0)
    assert len(m.category_counts["lead_id"]) == 50
    assert len(m.model.weights) <= 51  # 50 tracked ids and the shared (other)


def test_long_text_is_a_rare_category_and_is_shortened_in_reasons():
    m = FitModel(min_labels=10)
    rng = random.Random(1)
    for i in range(200):
        note = f"{i} " + "called, no answer " * 20
        m.learn_one({"notes": note, "plan": rng.choice(["pro", "free"])}, i % 4 == 0)
        m.learn_one({"plan": "pro", "notes": ""}, True)
    assert m.features({"notes": "x" * 500}) == {"notes=(other)": 1.0}
    reasons = {r.feature: r.text for r in m.explain({"notes": "y" * 500, "plan": "pro"})}
    assert reasons["notes"].startswith("notes is " + "y" * 39 + "… (uncommon) (-")


def test_mixed_column_numbers_and_text_both_count():
    m = FitModel(min_count=1)
    m.learn_one({"employees": "10,000+"}, True)
    m.learn_one({"employees": 12}, False)
    assert m.features({"employees": "10,000+"}) == {"employees=10,000+": 1.0}
    assert set(m.features({"employees": "12"})) == {"employees"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1200", 1200.0), ("$2.5M", 2.5e6), ("1.5k", 1500.0), ("-3", -3.0), ("12%", 12.0)],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_learns_a_categorical_and_numeric_signal():
    m = trained()
    best = {"industry": "Software", "employees": 20000}
    worst = {"industry": "Retail", "employees": 20}
    assert m.score_one(best) > 81 > 50 > m.score_one(worst)
    assert m.band_one(best) == "strong"
    assert m.band_one(worst) == "weak"
    assert m.predict_proba_one(best) > 0.6 > 0.2 > m.predict_proba_one(worst)


def test_score_is_the_odds_against_an_average_lead():
    m = trained()
    base_odds = m.base_rate / (1 - m.base_rate)
    for x in ({"industry": "Software", "employees": 20000}, {"industry": "Retail"}, {}):
        p, score = m.predict_proba_one(x), m.score_one(x)
        assert score / (100 - score) == pytest.approx(p / (1 - p) / base_odds)


def test_missing_and_uncommon_values_are_said_in_plain_words():
    rng = random.Random(5)
    m = FitModel(min_labels=20, min_count=5)
    for _ in range(800):
        has_revenue = rng.random() < 0.5
        x = {"revenue": rng.choice([1e6, 5e6]) if has_revenue else "", "country": "US"}
        m.learn_one(x, rng.random() < (0.5 if has_revenue else 0.05))
        if rng.random() < 0.2:  # a trickle of one-off countries, which mostly did not buy
            m.learn_one({"country": f"C{rng.randrange(10**6)}"}, rng.random() < 0.02)
    texts = [r.text for r in m.explain({"revenue": None, "country": "Atlantis"})]
    assert any(t.startswith("revenue is missing (-") for t in texts), texts
    assert any(t.startswith("country is Atlantis (uncommon) (-") for t in texts), texts


def test_fit_band_thresholds():
    assert [fit_band(s) for s in (100, 81, 80.99, 50, 49.99, 0)] == [
        "strong",
        "strong",
        "moderate",
        "moderate",
        "weak",
        "weak",
    ]


def test_explain_names_attributes_with_signed_points():
    m = trained()
    good = m.explain({"industry": "Software", "employees": 20000})
    assert [r.feature for r in good] == ["industry", "employees"]
    assert good[0].text.startswith("industry is Software (+")
    assert good[1].text.startswith("employees is 20,000 (+")
    assert all(r.contribution > 0 for r in good)
    bad = m.explain({"industry": "Retail", "employees": None, "plan": "Obscure"})
    texts = {r.feature: r.text for r in bad}
    assert texts["industry"].startswith("industry is Retail (-")
    assert all(r.contribution < 0 for r in bad if r.feature == "industry")
    # a value's points roughly add up to the score's distance from an average lead
    x = {"industry": "Software", "employees": 20000}
    assert sum(r.contribution for r in m.explain(x)) == pytest.approx(m.score_one(x) - 50, abs=15)


def test_explain_top_limits_each_side():
    m = trained()
    reasons = m.explain({"industry": "Software", "employees": 20000}, top=1)
    assert len(reasons) == 1


def test_pickle_round_trip_keeps_scores_and_learning():
    m = trained()
    clone = pickle.loads(pickle.dumps(m))
    x = {"industry": "Fintech", "employees": "2,000"}
    assert clone.score_one(x) == m.score_one(x)
    assert [r.text for r in clone.explain(x)] == [r.text for r in m.explain(x)]
    clone.learn_one(x, True)
    assert clone.n_labels == m.n_labels + 1


def test_older_pickles_get_defaults_for_new_attributes():
    m = trained()
    state = m.__getstate__()
    for name in ("intercept_lr", "indicator_counts", "max_categories", "clip"):
        del state[name]
    old = FitModel.__new__(FitModel)
    old.__setstate__(state)
    x = {"industry": "Software", "employees": 20000}
    assert old.indicator_counts == {}
    assert old.max_categories == 500
    assert 0 <= old.score_one(x) <= 100
    old.learn_one(x, True)  # and it keeps learning


def test_save_and_load_fit_model(tmp_path):
    m = trained()
    path = save_fit_model(m, tmp_path / "models" / "fit.pkl")
    loaded = load_fit_model(path)
    x = {"industry": "Software", "employees": 200}
    assert loaded.score_one(x) == m.score_one(x)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_load_fit_model_errors_name_the_file(tmp_path):
    with pytest.raises(FitModelError, match=r"no fit model at .*missing\.pkl"):
        load_fit_model(tmp_path / "missing.pkl")
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"\x80\x05not a pickle at all")
    with pytest.raises(FitModelError, match=r"corrupt\.pkl is not a readable fit model"):
        load_fit_model(corrupt)
    foreign = tmp_path / "foreign.pkl"
    foreign.write_bytes(pickle.dumps({"some": "thing"}))
    with pytest.raises(FitModelError, match="is not a fit model"):
        load_fit_model(foreign)
    with pytest.raises(FitModelError, match="cannot read"):
        load_fit_model(tmp_path)  # a directory
