from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intent_stream.scoring import FitModel, average_precision, backtest, log_loss, roc_auc


def test_roc_auc_on_hand_made_cases():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert roc_auc([0.3, 0.3, 0.3, 0.3], [False, True, False, True]) == 0.5
    # one inversion out of 2 x 3 pairs
    assert roc_auc([0.1, 0.5, 0.4, 0.6, 0.7], [False, False, True, True, True]) == 5 / 6
    assert roc_auc([0.1, 0.2], [False, False]) is None
    assert roc_auc([], []) is None


def test_average_precision_on_hand_made_cases():
    assert average_precision([0.9, 0.1], [True, False]) == 1.0
    # ranked: T F T -> precision 1 at recall 1/2, 2/3 at recall 1
    assert average_precision([0.9, 0.5, 0.1], [True, False, True]) == pytest.approx(5 / 6)
    # a tie between a positive and a negative is one threshold: precision 1/2 there
    assert average_precision([0.5, 0.5], [True, False]) == 0.5
    assert average_precision([0.5, 0.4], [True, True]) is None
    assert average_precision([0.5, 0.4], [False, False]) is None


def test_log_loss_on_hand_made_cases():
    assert log_loss([0.8, 0.2], [True, False]) == pytest.approx(-math.log(0.8))
    assert log_loss([1.0], [False]) == pytest.approx(-math.log(1e-15), rel=1e-3)  # clipped


scored = st.lists(
    st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]), st.booleans()),
    min_size=1,
    max_size=40,
)


@given(scored)
def test_roc_auc_matches_the_pairwise_definition(pairs):
    scores, labels = [s for s, _ in pairs], [y for _, y in pairs]
    pos = [s for s, y in pairs if y]
    neg = [s for s, y in pairs if not y]
    auc = roc_auc(scores, labels)
    if not pos or not neg:
        assert auc is None
        return
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    assert auc == pytest.approx(wins / (len(pos) * len(neg)))


@given(scored)
def test_average_precision_matches_its_definition(pairs):
    scores, labels = [s for s, _ in pairs], [y for _, y in pairs]
    positives = [s for s, y in pairs if y]
    ap = average_precision(scores, labels)
    if not positives or len(positives) == len(pairs):
        assert ap is None
        return
    # mean over positives of the precision among rows scored at least as high
    expected = sum(
        sum(1 for s2, y2 in pairs if s2 >= s and y2) / sum(1 for s2, _ in pairs if s2 >= s)
        for s in positives
    ) / len(positives)
    assert ap == pytest.approx(expected)


def learnable(n: int, seed: int) -> list[tuple[dict, bool]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        industry = rng.choice(["Software", "Retail", "Fintech", "Education"])
        employees = int(math.exp(rng.gauss(4, 1.5)))
        logit = {"Software": 1.0, "Fintech": 0.5, "Retail": -1.0, "Education": -1.5}[industry]
        logit += 0.8 * (math.log10(employees + 1) - 2)
        x = {"industry": industry, "employees": employees if rng.random() < 0.9 else "N/A"}
        rows.append((x, rng.random() < 1 / (1 + math.exp(-logit))))
    return rows


def test_backtest_separates_a_learnable_signal_and_not_a_shuffled_one():
    rows = learnable(3000, seed=11)
    result = backtest(rows)
    assert result.n == 3000
    assert result.positives == sum(y for _, y in rows)
    assert result.roc_auc is not None
    assert result.roc_auc > 0.7
    assert result.log_loss is not None
    assert result.log_loss < log_loss([result.positives / 3000] * 3000, [y for _, y in rows])
    labels = [y for _, y in rows]
    random.Random(2).shuffle(labels)
    shuffled = backtest((x, y) for (x, _), y in zip(rows, labels, strict=True))
    assert shuffled.roc_auc is not None
    assert abs(shuffled.roc_auc - 0.5) < 0.06


def test_backtest_scores_each_row_before_learning_it():
    calls: list[tuple[str, int]] = []

    class Spy(FitModel):
        def predict_proba_one(self, x):
            calls.append(("predict", x["i"]))
            return super().predict_proba_one(x)

        def learn_one(self, x, y):
            calls.append(("learn", x["i"]))
            super().learn_one(x, y)

    result = backtest([({"i": i}, i % 2 == 0) for i in range(3)], model=Spy())
    assert calls == [(verb, i) for i in range(3) for verb in ("predict", "learn")]
    assert result.model.n_labels == 3


def test_backtest_warms_the_model_it_is_given():
    model = FitModel()
    result = backtest(learnable(500, seed=3), model=model)
    assert result.model is model
    assert model.n_labels == 500
    assert model.ready


def test_backtest_with_one_class_has_no_auc():
    result = backtest([({"plan": "pro"}, False)] * 20)
    assert (result.roc_auc, result.pr_auc) == (None, None)
    assert result.log_loss is not None
    assert result.as_dict() == {
        "roc_auc": None,
        "pr_auc": None,
        "log_loss": result.log_loss,
        "n": 20,
    }


def test_backtest_reports_progress():
    seen: list[int] = []
    backtest(learnable(25, seed=1), progress=seen.append, progress_every=10)
    assert seen == [10, 20]


def test_backtest_of_nothing():
    result = backtest([])
    assert (result.n, result.roc_auc, result.pr_auc, result.log_loss) == (0, None, None, None)
