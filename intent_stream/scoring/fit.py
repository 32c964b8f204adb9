"""Fit scoring: how much an account or lead looks like the ones that bought.

:class:`FitModel` learns online from firmographic and lead attributes (industry, employees,
country, plan, revenue, title, any CRM column) and outcome labels, and scores 0-100.

Encoding is inferred per value, so a messy CRM export needs no schema:

* **missing** (``None``, ``""``, ``NA``, ``N/A``, ``null``, ``none``, ``nan``, ``-``, NaN,
  infinities): a ``column=(missing)`` indicator and no numeric contribution;
* **numbers** (``int``/``float``, or text such as ``1200``, ``1,200``, ``$1.2M``, ``35%``):
  signed ``log1p`` (employees and revenue are heavy-tailed), then standardised with running
  statistics learned online and clipped to ``+-clip`` standard deviations;
* **booleans** and **text**: one-hot ``column=value`` (case and surrounding spaces ignored;
  ``True`` and ``"true"`` are the same value). A value seen fewer than ``min_count`` times in
  the labelled rows shares the column's ``column=(other)`` indicator, and each column tracks
  at most ``max_categories`` values, so id or e-mail columns cannot blow the model up;
* anything else (lists, nested objects) is ignored.

The classifier is a River :class:`~river.linear_model.LogisticRegression` with AdaGrad, whose
per-feature step sizes suit one-hot columns of very different frequencies (on the benchmark's
synthetic CRM export it beat plain SGD by about 0.015 ROC AUC; it costs ~10 us more per
*learned* row, and learning only happens when labels arrive). There is no River scaler in
the pipeline (it costs most of a River learn step, see KAFKA_NOTES): the running statistics
above do that job for a fraction of the cost.

**Score.** ``100 * sigmoid(logit(p) - logit(base_rate))``: 50 is an average lead (the odds of
the labelled rows so far), above 50 better than average. Until ``min_labels`` labels with
both classes have been learned the model returns that neutral prior: ``predict_proba_one`` is
the smoothed base rate and ``score_one`` exactly 50. **Bands** (as 6sense and MadKudu show
fit): ``strong`` at 81 or more (odds at least about 4.3 times the average), ``moderate`` from
50 to below 81, ``weak`` below 50; see :func:`fit_band`.

>>> import random
>>> rng = random.Random(7)
>>> m = FitModel(min_labels=20)
>>> m.score_one({"industry": "Software"})  # the neutral prior until 20 labels
50.0
>>> for _ in range(600):
...     industry = rng.choice(["Software", "Retail", "Fintech"])
...     employees = rng.choice([20, 200, 2000, None])
...     p = {"Software": 0.6, "Fintech": 0.4, "Retail": 0.1}[industry] + 0.2 * (employees == 2000)
...     m.learn_one({"industry": industry, "employees": employees}, rng.random() < p)
>>> x = {"industry": "Software", "employees": 2000}
>>> round(m.score_one(x)), m.band_one(x)
(79, 'moderate')
>>> [r.text for r in m.explain(x)]
['industry is Software (+17)', 'employees is 2,000 (+10)']
>>> [r.text for r in m.explain({"industry": "Retail", "employees": None})]
['industry is Retail (-20)', 'employees is missing (-4)']
"""

from __future__ import annotations

import functools
import math
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from river import linear_model, optim

from intent_stream.scoring.intent import Reason

__all__ = [
    "BAND_MODERATE",
    "BAND_STRONG",
    "FitBand",
    "FitModel",
    "FitModelError",
    "fit_band",
    "load_fit_model",
    "save_fit_model",
]

FitBand = Literal["strong", "moderate", "weak"]

BAND_STRONG = 81.0
BAND_MODERATE = 50.0

MISSING_VALUES = frozenset(
    {"", "na", "n/a", "n.a.", "nan", "null", "none", "nil", "-", "--", "?", "#n/a", "unknown"}
)
_MISSING = "(missing)"
_OTHER = "(other)"
# Optional currency, digits with optional thousands separators, decimals, exponent, then an
# optional k/m/b(n) multiplier or percent sign: "1,200", "$1.2M", "3e5", "35%", "-4.5".
_NUMBER = re.compile(
    r"^([+-]?)[$€£¥]?\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(e[+-]?\d+)?\s*(k|mm|m|bn|b|%)?$"
)
_MULTIPLIER = {"k": 1e3, "m": 1e6, "mm": 1e6, "b": 1e9, "bn": 1e9, "%": 1.0, None: 1.0}
_FORMAT = "intent_stream.fit"
_FORMAT_VERSION = 1


def fit_band(score: float) -> FitBand:
    """The fit band of a 0-100 fit score: strong >= 81, moderate 50-80, weak < 50.

    >>> [fit_band(s) for s in (95, 81, 80.9, 50, 49.9)]
    ['strong', 'strong', 'moderate', 'moderate', 'weak']
    """
    if score >= BAND_STRONG:
        return "strong"
    if score >= BAND_MODERATE:
        return "moderate"
    return "weak"


def parse_number(text: str) -> float | None:
    """The number a CRM cell holds, or ``None`` if it is not one.

    >>> [parse_number(s) for s in ("1,200", "$1.2M", "35%", "-4.5", "2e3", " 7 ")]
    [1200.0, 1200000.0, 35.0, -4.5, 2000.0, 7.0]
    >>> [parse_number(s) for s in ("51-200", "10,000+", "ACME", "1,20", "")]
    [None, None, None, None, None]
    """
    match = _NUMBER.match(text.strip().lower())
    if match is None:
        return None
    sign, mantissa, exponent, suffix = match.groups()
    value = float(sign + mantissa.replace(",", "") + (exponent or "")) * _MULTIPLIER[suffix]
    return value if math.isfinite(value) else None


def _signed_log1p(number: float) -> float:
    return math.copysign(math.log1p(abs(number)), number)


_NUM, _TEXT, _NONE = 0, 1, 2
# (column, feature, value, number if numeric, normalised text if text)
_Encoded = tuple[str, str, float, float | None, str | None]


@functools.lru_cache(maxsize=65_536)
def _parse_text(raw: str) -> tuple[int, float, float, str]:
    """``(kind, number, signed log1p, normalised text)`` of a cell; cached, cells repeat."""
    text = raw.strip().casefold()
    if text in MISSING_VALUES:
        return _NONE, 0.0, 0.0, ""
    if text[0] in "0123456789+-$€£¥.":
        number = parse_number(text)
        if number is not None:
            return _NUM, number, _signed_log1p(number), ""
    return _TEXT, 0.0, 0.0, text


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return math.log(p / (1.0 - p))


def _show_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.4g}"


class FitModel:
    """P(converts) from firmographic and lead attributes, learned online; scores 0-100.

    Parameters
    ----------
    min_labels
        Labels (with at least one of each class) before the model scores; until then every
        account gets the neutral prior (score 50, probability = smoothed base rate).
    learning_rate
        AdaGrad step of the logistic regression's weights.
    intercept_lr
        SGD step of its intercept (small: the intercept tracks the base rate).
    l2
        L2 penalty: keeps weights of rare values small.
    min_count
        Labelled occurrences a text value needs before it gets a weight of its own; rarer
        values share the column's ``(other)`` weight.
    max_categories
        Distinct values tracked per column (memory bound for id-like columns).
    clip
        Standardised numbers are clipped to ``[-clip, clip]`` (outliers in messy exports).

    Examples
    --------
    >>> m = FitModel()
    >>> m.features({"employees": "1,200", "industry": " Software ", "country": "NA"})
    {'employees': 0.0, 'industry=(other)': 1.0, 'country=(missing)': 1.0}
    """

    def __init__(
        self,
        *,
        min_labels: int = 50,
        learning_rate: float = 0.1,
        intercept_lr: float = 0.01,
        l2: float = 1e-4,
        min_count: int = 3,
        max_categories: int = 500,
        clip: float = 4.0,
    ) -> None:
        self.min_labels = min_labels
        self.learning_rate = learning_rate
        self.intercept_lr = intercept_lr
        self.l2 = l2
        self.min_count = min_count
        self.max_categories = max_categories
        self.clip = clip
        self.model = linear_model.LogisticRegression(
            optimizer=optim.AdaGrad(learning_rate), l2=l2, intercept_lr=intercept_lr
        )
        self.n_labels = 0
        self.n_positive = 0
        # column -> [count, mean, M2, sd] of signed-log1p numbers (Welford), labelled rows only
        self.numeric_stats: dict[str, list[float]] = {}
        # column -> normalised text value -> labelled occurrences (at most max_categories)
        self.category_counts: dict[str, dict[str, int]] = {}
        # column -> indicator feature -> labelled rows where it was on (for explain's baseline)
        self.indicator_counts: dict[str, dict[str, int]] = {}

    # -- encoding ------------------------------------------------------------------------
    def _encode(self, x: Mapping[str, Any]) -> list[_Encoded]:
        """``(column, feature, value, number or None, text or None)`` per usable attribute."""
        out: list[_Encoded] = []
        all_stats, all_counts, min_count = self.numeric_stats, self.category_counts, self.min_count
        for column, raw in x.items():
            number, t, text = 0.0, 0.0, ""
            kind = type(raw)
            if kind is str:
                # Short cells repeat (industries, countries, numbers) and are cached; long
                # ones (notes, descriptions) would only fill the cache with unique text.
                parse = _parse_text if len(raw) <= 64 else _parse_text.__wrapped__
                code, number, t, text = parse(raw)
            elif raw is None:
                code = _NONE
            elif kind is bool:
                code, text = _TEXT, ("true" if raw else "false")
            elif isinstance(raw, int | float):
                number = float(raw)
                code = _NUM if math.isfinite(number) else _NONE
                t = _signed_log1p(number) if code == _NUM else 0.0
            else:
                continue  # lists, nested objects: not attributes we can weigh
            if code == _NUM:
                z = 0.0
                stats = all_stats.get(column)
                # No spread yet (or a constant column): no information, and no division by 0.
                if stats is not None and stats[3] > 1e-9:
                    z = max(-self.clip, min(self.clip, (t - stats[1]) / stats[3]))
                out.append((column, column, z, number, None))
            elif code == _TEXT:
                seen = all_counts.get(column)
                known = seen is not None and seen.get(text, 0) >= min_count
                feature = f"{column}={text}" if known else f"{column}={_OTHER}"
                out.append((column, feature, 1.0, None, text))
            else:
                out.append((column, f"{column}={_MISSING}", 1.0, None, None))
        return out

    def features(self, x: Mapping[str, Any]) -> dict[str, float]:
        """The model's input for the attributes ``x`` (see the module docstring)."""
        return {item[1]: item[2] for item in self._encode(x)}

    # -- learning and scoring ------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether enough labels (of both classes) have been learned to score."""
        return self.n_labels >= self.min_labels and 0 < self.n_positive < self.n_labels

    @property
    def base_rate(self) -> float:
        """Share of positive labels so far, smoothed (0.5 before any label)."""
        return (self.n_positive + 1.0) / (self.n_labels + 2.0)

    def learn_one(self, x: Mapping[str, Any], y: bool) -> None:
        """Learn one labelled account or lead (``y``: did it convert)."""
        encoded = self._encode(x)
        self.model.learn_one({item[1]: item[2] for item in encoded}, bool(y))
        self.n_labels += 1
        self.n_positive += int(bool(y))
        # Statistics change after the step, so the row is learned exactly as it was scored
        # (progressive validation stays honest).
        for column, feature, _, number, text in encoded:
            if number is not None:
                self._observe_number(column, number)
                continue
            counts = self.indicator_counts.setdefault(column, {})
            counts[feature] = counts.get(feature, 0) + 1
            if text is None:
                continue
            seen = self.category_counts.setdefault(column, {})
            if text in seen:
                seen[text] += 1
            elif len(seen) < self.max_categories:
                seen[text] = 1

    def _observe_number(self, column: str, number: float) -> None:
        """Welford's running mean and variance of the transformed number."""
        t = _signed_log1p(number)
        stats = self.numeric_stats.get(column)
        if stats is None:
            self.numeric_stats[column] = [1.0, t, 0.0, 0.0]
            return
        stats[0] += 1.0
        delta = t - stats[1]
        stats[1] += delta / stats[0]
        stats[2] += delta * (t - stats[1])
        stats[3] = math.sqrt(max(stats[2], 0.0) / (stats[0] - 1.0))

    def predict_proba_one(self, x: Mapping[str, Any]) -> float:
        """P(converts); the smoothed base rate until the model is :attr:`ready`."""
        if not self.ready:
            return self.base_rate
        proba = self.model.predict_proba_one(self.features(x))  # type: ignore[no-untyped-call]
        return float(proba.get(True, 0.0))

    def score_one(self, x: Mapping[str, Any]) -> float:
        """Fit score 0-100: 50 is an average lead; 50 exactly until :attr:`ready`."""
        if not self.ready:
            return 50.0
        return 100.0 * _sigmoid(self._relative_logit(self.predict_proba_one(x)))

    def band_one(self, x: Mapping[str, Any]) -> FitBand:
        """The fit band of ``x``'s score (:func:`fit_band`)."""
        return fit_band(self.score_one(x))

    def _relative_logit(self, p: float) -> float:
        return _logit(p) - _logit(self.base_rate)

    def explain(self, x: Mapping[str, Any], *, top: int = 3) -> list[Reason]:
        """Top positive, then negative, attributes with the points each adds to the score.

        An attribute's points are how far the score moves if that attribute were replaced
        by an average one (its weight against the weighted mean of its column's weights),
        the others held fixed. Empty until the model is :attr:`ready`; attributes worth less
        than half a point are left out.
        """
        return self.score_explain(x, top=top)[1]

    def score_explain(self, x: Mapping[str, Any], *, top: int = 3) -> tuple[float, list[Reason]]:
        """:meth:`score_one` and :meth:`explain` of ``x``, encoding and predicting it once.

        >>> FitModel().score_explain({"industry": "Software"})
        (50.0, [])
        """
        if not self.ready:
            return 50.0, []
        encoded = self._encode(x)
        features = {item[1]: item[2] for item in encoded}  # as features(x)
        proba = self.model.predict_proba_one(features)  # type: ignore[no-untyped-call]
        weights = self.model.weights
        relative = self._relative_logit(float(proba.get(True, 0.0)))
        score = 100.0 * _sigmoid(relative)
        points: list[tuple[str, float, str]] = []
        for column, feature, value, number, _ in encoded:
            delta = weights.get(feature, 0.0) * value - self._baseline(column, weights)
            change = score - 100.0 * _sigmoid(relative - delta)
            if abs(change) < 0.5:
                continue
            points.append((column, change, self._phrase(column, feature, x[column], number)))
        ranked = sorted(points, key=lambda item: -abs(item[1]))
        positive = [item for item in ranked if item[1] > 0][:top]
        negative = [item for item in ranked if item[1] < 0][:top]
        return score, [
            Reason(column, change, f"{phrase} ({change:+.0f})")
            for column, change, phrase in positive + negative
        ]

    def _baseline(self, column: str, weights: Mapping[str, float]) -> float:
        """The column's average contribution to the logit over the labelled rows."""
        counts = self.indicator_counts.get(column)
        if not counts or not self.n_labels:
            return 0.0  # numbers are standardised: their average contribution is about 0
        return sum(n * weights.get(f, 0.0) for f, n in counts.items()) / self.n_labels

    @staticmethod
    def _phrase(column: str, feature: str, raw: Any, number: float | None) -> str:
        name = column.replace("_", " ").strip()
        if feature.endswith("=" + _MISSING):
            return f"{name} is missing"
        if number is not None:
            return f"{name} is {_show_number(number)}"
        if isinstance(raw, bool):
            return f"{name} is {'true' if raw else 'false'}"
        text = str(raw).strip()
        text = text if len(text) <= 40 else text[:39] + "…"
        if feature.endswith("=" + _OTHER):  # its weight is the column's rare-value weight
            return f"{name} is {text} (uncommon)"
        return f"{name} is {text}"

    # -- persistence ---------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Attributes added after a model was pickled get their defaults, so old files load.
        for name, default in (
            ("min_labels", 50),
            ("learning_rate", 0.1),
            ("intercept_lr", 0.01),
            ("l2", 1e-4),
            ("min_count", 3),
            ("max_categories", 500),
            ("clip", 4.0),
            ("n_labels", 0),
            ("n_positive", 0),
        ):
            state.setdefault(name, default)
        for name in ("numeric_stats", "category_counts", "indicator_counts"):
            state.setdefault(name, {})
        self.__dict__.update(state)


class FitModelError(ValueError):
    """A fit model file is missing, unreadable or not a fit model; the message says which."""


def save_fit_model(model: FitModel, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` atomically (a reader never sees half a file).

    The file is a pickle: load only files you wrote yourself.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    envelope = {"format": _FORMAT, "version": _FORMAT_VERSION, "model": model}
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(envelope, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the worker may run as another user
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_fit_model(path: str | os.PathLike[str]) -> FitModel:
    """The :class:`FitModel` stored by :func:`save_fit_model` (``intent-stream fit train``).

    Raises :class:`FitModelError` naming the path if the file is missing or is not a fit
    model. Unpickling runs code from the file: load only files you wrote yourself.

    >>> load_fit_model("/nonexistent/fit-model.pkl")
    Traceback (most recent call last):
    ...
    intent_stream.scoring.fit.FitModelError: no fit model at /nonexistent/fit-model.pkl; \
create one with 'intent-stream fit train FILE.csv --label COLUMN'
    """
    source = Path(path)
    try:
        with source.open("rb") as fh:
            envelope = pickle.load(fh)
    except FileNotFoundError:
        raise FitModelError(
            f"no fit model at {source}; create one with "
            "'intent-stream fit train FILE.csv --label COLUMN'"
        ) from None
    except OSError as exc:
        raise FitModelError(f"cannot read fit model {source}: {exc.strerror or exc}") from None
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file
        raise FitModelError(
            f"{source} is not a readable fit model (corrupt or another kind of file: "
            f"{type(exc).__name__})"
        ) from None
    model = envelope.get("model") if isinstance(envelope, dict) else None
    if not isinstance(model, FitModel) or envelope.get("format") != _FORMAT:
        raise FitModelError(f"{source} is not a fit model written by 'intent-stream fit train'")
    return model
