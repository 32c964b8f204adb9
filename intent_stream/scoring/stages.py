"""Journey stages: a configurable stage model, evaluated per account in event time.

A :class:`StageModel` (from TOML: :func:`load_stage_model`, built-in default
``intent_stream/stages.default.toml``) lists the stages, each with *enter* and *exit* rules on
the account's evidence (signal counts, intent score, fit, people, product usage, tracked
events, the churn model), a stage to fall back to when the evidence fades or the account goes
dormant, and the CRM outcomes that override the evidence. Enter thresholds above exit
thresholds give hysteresis.

A :class:`StageMachine` applies it: :meth:`StageMachine.step` takes an account's compact
:class:`StageState`, the events of one record and the account's evidence after them, and
returns the new state and the :class:`StageTransition` s to publish. Event time decides:
events are taken in event-time order, transitions are stamped with event time, dormancy is
measured in event time, and a late outcome older than one already applied does not undo it.
Transition ids are a hash of the account, the transition's sequence number, its stages and
its event time, so a replay of the same history yields the same ids.

>>> from intent_stream.scoring.signals import AccountSignals
>>> machine = StageMachine(model=default_stage_model())
>>> signals = AccountSignals()
>>> signals.learn_one(signal="demo_request", ts=100.0, person_id="p1")
>>> demo = {"type": "track", "event": "Demo Requested"}
>>> step = machine.step(None, account_id="acme.com", events=[(100.0, demo)],
...                     signals=signals, intent_score=40.0, now=100.0)
>>> [(t.from_stage, t.to_stage) for t in step.transitions]
[(None, 'awareness'), ('awareness', 'evaluation')]
>>> step.transitions[1].reason
'requested a demo (1 time recently)'
>>> won = {"type": "track", "event": "Deal Won"}
>>> step = machine.step(step.state, account_id="acme.com", events=[(200.0, won)],
...                     signals=signals, intent_score=40.0, now=200.0)
>>> [(t.from_stage, t.to_stage, t.reason) for t in step.transitions]
[('evaluation', 'customer', 'CRM outcome: Deal Won')]
"""

from __future__ import annotations

import functools
import hashlib
import math
import operator
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from intent_stream.scoring.isotime import iso_ms
from intent_stream.scoring.signals import (
    DEFAULT_SIGNALS,
    HIGH_INTENT,
    PAGE_SIGNALS,
    TRACK_SIGNALS,
    AccountSignals,
    classify,
)
from intent_stream.scoring.transitions import TransitionModel

__all__ = [
    "BUILTIN_MEASURES",
    "DEFAULT_STAGE_CONFIG",
    "Clause",
    "Evidence",
    "OutcomeSpec",
    "Rule",
    "StageConfigError",
    "StageMachine",
    "StageModel",
    "StageSpec",
    "StageState",
    "StageStep",
    "StageTransition",
    "TrackedEvent",
    "default_stage_model",
    "load_stage_model",
    "parse_stage_model",
    "stored_history",
    "transition_id",
]

DAY = 86400.0
#: The built-in stage model, shipped with the package.
DEFAULT_STAGE_CONFIG = "stages.default.toml"
_MAX_STAGES = 20
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_REASON_CHARS = 80
#: Transition ids kept by :func:`transition_id` (its cache).
_TRANSITION_IDS = 16384
# Product usage is followed at two speeds; the ratio of their rates is the usage trend.
_USAGE_SHORT_DAYS = 7.0
_USAGE_LONG_DAYS = 28.0
_USAGE_MIN = 3.0  # decayed long-window uses below which the trend is not judged
_ACTIVE_MIN = 3  # people active in 60 days below which active users are not judged
_CHURN_REFRESH = DAY  # event-time seconds between two churn-model predictions per account
_USAGE = "product_usage"  # the signal that usage and usage_trend follow
_PAGE_USAGE = _USAGE in PAGE_SIGNALS

#: Measures every stage model may use, besides the signal names and its tracked events.
BUILTIN_MEASURES: Mapping[str, str] = {
    "intent_score": "the account's intent score, 0-100",
    "fit": "the account's fit score, 0-100, from its firmographics (50 until the fit model "
    "has learned enough won and lost deals; rules on it fail where no fit score is given)",
    "high_intent": "decayed count of high-intent signals (pricing, comparison, demo, trial, "
    "contact)",
    "people": "people engaged in the last 30 days",
    "senior_people": "senior people engaged in the last 30 days",
    "velocity": "events in the last 7 days against the weekly average of the 21 before (1 = flat)",
    "days_in_stage": "event-time days since the account entered its current stage",
    "usage": "decayed product usage (28-day half-life)",
    "usage_trend": "product usage rate, last week against the last month (1 = steady, "
    "0.5 = halved); 1 while there is too little usage to judge",
    "active_users": "share of the people active in the last 60 days who were active in the "
    "last 14 (1 while fewer than 3 people were active)",
    "churn_probability": "the churn model's probability (0-1) that a customer churns within "
    "the churn horizon",
}

_TOP_KEYS = {"version", "initial", "history", "churn_stage", "model", "events", "stage", "outcome"}
_STAGE_KEYS = {
    "name",
    "description",
    "enter",
    "exit",
    "exit_to",
    "dormant_days",
    "from",
    "next",
    "customer",
    "exit_reason",
}
_OUTCOME_KEYS = {"event", "to", "from", "hold_days"}
_EVENT_KEYS = {"names", "half_life_days", "phrase"}
_MODEL_KEYS = {"horizon_days", "churn_horizon_days"}


class StageConfigError(ValueError):
    """A stage config the engine cannot use; the message names the file, line and problem."""


# -- the model -------------------------------------------------------------------------------


#: What :meth:`Clause.holds` does for each operator (any other is ``<``, ``_LESS``).
_Compare = Callable[[float, float], bool]
_LESS: _Compare = operator.lt
_COMPARE: Mapping[str, _Compare] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": _LESS,
}


@dataclass(frozen=True)
class Clause:
    """``measure op threshold``, e.g. ``high_intent >= 3``."""

    measure: str
    op: str
    threshold: float

    def holds(self, value: float | None) -> bool:
        return value is not None and _COMPARE.get(self.op, _LESS)(value, self.threshold)


@dataclass(frozen=True)
class Rule:
    """Clauses that must all hold (``a >= 1 and b < 2``), with the text it was written as."""

    clauses: tuple[Clause, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> Rule:
        """
        >>> Rule.parse("people >= 2 and high_intent > 1.5").clauses[1]
        Clause(measure='high_intent', op='>', threshold=1.5)
        """
        clauses = []
        for part in re.split(r"\s+and\s+", text.strip()):
            match = _CLAUSE.match(part)
            if match is None:
                raise ValueError(
                    f"cannot read {part.strip()!r}: write 'measure >= number' (operators >=, >, "
                    "<=, <), clauses joined by 'and'"
                )
            clauses.append(Clause(match[1], match[2], float(match[3])))
        return cls(tuple(clauses), text.strip())


@dataclass(frozen=True)
class StageSpec:
    """One stage: its rules, where it falls back to, and what advancing from it means."""

    name: str
    rank: int
    description: str = ""
    enter: tuple[Rule, ...] = ()
    exit: tuple[Rule, ...] = ()
    exit_to: str | None = None
    dormant_days: float | None = None
    from_stages: frozenset[str] = frozenset()
    next: str | None = None
    customer: bool = False
    exit_reason: str = "evidence faded"


@dataclass(frozen=True)
class OutcomeSpec:
    """A CRM outcome event (a ``track`` event name) that moves an account to a stage."""

    event: str
    to: str
    from_stages: frozenset[str] | None = None  # None: from any stage
    hold_days: float = 0.0


@dataclass(frozen=True)
class TrackedEvent:
    """Track events the stage machine counts itself, decayed, as the measure ``name``."""

    name: str
    names: frozenset[str]
    half_life_days: float
    phrase: str


@dataclass(frozen=True)
class StageModel:
    """A validated stage configuration (build with :func:`parse_stage_model`)."""

    stages: tuple[StageSpec, ...]
    initial: str
    history: int = 5
    churn_stage: str | None = None
    horizon_days: float = 30.0
    churn_horizon_days: float = 90.0
    outcomes: tuple[OutcomeSpec, ...] = ()
    events: tuple[TrackedEvent, ...] = ()
    source: str = "<built-in>"
    by_name: dict[str, StageSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({s.name: s for s in self.stages})

    def stage(self, name: str) -> StageSpec:
        return self.by_name[name]

    def measures(self) -> set[str]:
        """Every measure a rule of this model may name."""
        return set(BUILTIN_MEASURES) | set(DEFAULT_SIGNALS) | {e.name for e in self.events}

    def possible_transitions(self) -> set[tuple[str, str]]:
        """Every (from, to) this model can produce; ``'none'`` is a new account's from.

        >>> ("none", "awareness") in default_stage_model().possible_transitions()
        True
        """
        pairs = {("none", self.initial)}
        names = [s.name for s in self.stages]
        for spec in self.stages:
            if spec.enter:
                pairs |= {(f, spec.name) for f in spec.from_stages if f != spec.name}
            if spec.exit_to is not None and (spec.exit or spec.dormant_days):
                pairs.add((spec.name, spec.exit_to))
        for outcome in self.outcomes:
            sources = outcome.from_stages if outcome.from_stages is not None else names
            pairs |= {(f, outcome.to) for f in sources if f != outcome.to}
        return pairs

    def ahead(self, name: str) -> set[str]:
        """The stages that count as advancing from ``name``: its ``next`` and beyond.

        >>> sorted(default_stage_model().ahead("evaluation"))
        ['advocacy', 'customer', 'purchase']
        """
        out: set[str] = set()
        current = self.by_name[name].next
        while current is not None and current not in out:
            out.add(current)
            current = self.by_name[current].next
        return out


# -- loading and validation -----------------------------------------------------------------


class _Locator:
    """Lines of tables and keys in a TOML text, found by a light scan (for error messages)."""

    _ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.\-\"]+)\s*\]\]")
    _TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"]+)\s*\]")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        # (table, index) -> {"": header line, key: line}; top level is ("", None)
        self.tables: dict[tuple[str, int | None], dict[str, int]] = {("", None): {}}
        self.ends: dict[tuple[str, int | None], int] = {}
        counts: dict[str, int] = {}
        current: tuple[str, int | None] = ("", None)
        for number, line in enumerate(self.lines, start=1):
            array = self._ARRAY.match(line)
            table = None if array else self._TABLE.match(line)
            if array or table:
                self.ends[current] = number - 1
                if array:
                    name = array[1]
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                    current = (name, index)
                else:
                    assert table is not None
                    current = (table[1].replace('"', ""), None)
                self.tables.setdefault(current, {})[""] = number
                continue
            key = self._KEY.match(line)
            if key:
                self.tables.setdefault(current, {}).setdefault(key[1], number)
        self.ends[current] = len(self.lines)

    def line(self, table: tuple[str, int | None], key: str = "", needle: str = "") -> int | None:
        keys = self.tables.get(table, {})
        start = keys.get(key) or keys.get("")
        if start is None:
            return None
        if needle:
            for number in range(start, self.ends.get(table, len(self.lines)) + 1):
                if needle in self.lines[number - 1]:
                    return number
        return start


class _Problems:
    def __init__(self, source: str, locator: _Locator) -> None:
        self.source = source
        self.locator = locator
        self.items: list[tuple[int, str]] = []

    def add(self, where: tuple[str, int | None], key: str, problem: str, needle: str = "") -> None:
        self.items.append((self.locator.line(where, key, needle) or 0, problem))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        lines = [
            f"{self.source}:{line}: {problem}" if line else f"{self.source}: {problem}"
            for line, problem in sorted(self.items, key=lambda item: item[0])
        ]
        raise StageConfigError("invalid stage config:\n  " + "\n  ".join(lines))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


def parse_stage_model(text: str, *, source: str = "<string>") -> StageModel:
    """Parse and validate a TOML stage config; :class:`StageConfigError` names line and problem.

    >>> parse_stage_model('version = 1\\n[[stage]]\\nname = "a"\\nenter = ["x >= 1"]\\n',
    ...                   source="s.toml")
    Traceback (most recent call last):
    ...
    intent_stream.scoring.stages.StageConfigError: invalid stage config:
      s.toml:4: stage 'a': enter rule 'x >= 1': unknown measure 'x'
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        if at:
            message = message[: at.start()].rstrip()
            raise StageConfigError(
                f"invalid stage config:\n  {source}:{at[1]}: column {at[2]}: {message}"
            ) from None
        raise StageConfigError(f"invalid stage config:\n  {source}: {message}") from None
    problems = _Problems(source, _Locator(text))
    top = ("", None)
    for key in sorted(set(doc) - _TOP_KEYS):
        problems.add(top, key, f"unknown key {key!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    if doc.get("version", 1) != 1:
        problems.add(top, "version", f"version must be 1 (got {doc.get('version')!r})")
    events = _parse_events(doc.get("events", {}), problems)
    model_table = doc.get("model", {})
    horizons = {"horizon_days": 30.0, "churn_horizon_days": 90.0}
    if not isinstance(model_table, dict):
        problems.add(top, "model", "[model] must be a table")
        model_table = {}
    for key in sorted(set(model_table) - _MODEL_KEYS):
        problems.add(("model", None), key, f"[model]: unknown key {key!r}")
    for key in _MODEL_KEYS:
        if key in model_table:
            value = model_table[key]
            if not _number(value) or value <= 0:
                problems.add(("model", None), key, f"[model]: {key} must be a positive number")
            else:
                horizons[key] = float(value)
    raw_stages = doc.get("stage")
    if not isinstance(raw_stages, list) or not raw_stages:
        problems.add(top, "stage", "no stages: add [[stage]] tables (name = '...')")
        problems.raise_if_any()
    assert isinstance(raw_stages, list)
    if len(raw_stages) > _MAX_STAGES:
        problems.add(("stage", _MAX_STAGES), "", f"at most {_MAX_STAGES} stages")
    names: list[str] = []
    for i, raw in enumerate(raw_stages):
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str) or not _NAME.match(name):
            problems.add(
                ("stage", i),
                "name",
                f"stage {i + 1}: name must be lower-case letters, digits and _ (got {name!r})",
            )
            name = f"#{i + 1}"
        elif name in names:
            problems.add(("stage", i), "name", f"stage {name!r} is defined twice")
        names.append(name)
    measures = set(BUILTIN_MEASURES) | set(DEFAULT_SIGNALS) | {e.name for e in events}
    stages = [_parse_stage(i, raw, names, measures, problems) for i, raw in enumerate(raw_stages)]
    outcomes = _parse_outcomes(doc.get("outcome", []), names, problems)
    initial = doc.get("initial", names[0])
    if initial not in names:
        problems.add(top, "initial", f"initial stage {initial!r} is not a stage")
    churn_stage = doc.get("churn_stage", "churned" if "churned" in names else None)
    if churn_stage is not None and churn_stage not in names:
        problems.add(top, "churn_stage", f"churn_stage {churn_stage!r} is not a stage")
    history = doc.get("history", 5)
    if not isinstance(history, int) or isinstance(history, bool) or not 1 <= history <= 20:
        problems.add(top, "history", f"history must be a whole number 1-20 (got {history!r})")
        history = 5
    problems.raise_if_any()
    return StageModel(
        stages=tuple(s for s in stages if s is not None),
        initial=str(initial),
        history=history,
        churn_stage=churn_stage,
        horizon_days=horizons["horizon_days"],
        churn_horizon_days=horizons["churn_horizon_days"],
        outcomes=outcomes,
        events=events,
        source=source,
    )


def _parse_events(raw: Any, problems: _Problems) -> tuple[TrackedEvent, ...]:
    if not isinstance(raw, dict):
        problems.add(("", None), "events", "[events] must hold tables like [events.escalations]")
        return ()
    out = []
    for name, spec in raw.items():
        where = (f"events.{name}", None)
        if not _NAME.match(name):
            problems.add(where, "", f"[events.{name}]: names are lower-case letters, digits, _")
            continue
        if name in BUILTIN_MEASURES or name in DEFAULT_SIGNALS:
            problems.add(where, "", f"[events.{name}]: {name!r} is already a built-in measure")
            continue
        if not isinstance(spec, dict):
            problems.add(where, "", f"[events.{name}] must be a table")
            continue
        for key in sorted(set(spec) - _EVENT_KEYS):
            problems.add(where, key, f"[events.{name}]: unknown key {key!r}")
        names = spec.get("names")
        if not _str_list(names) or not names:
            problems.add(where, "names", f"[events.{name}]: names must be a list of event names")
            continue
        half_life = spec.get("half_life_days", 30.0)
        if not _number(half_life) or half_life <= 0:
            problems.add(where, "half_life_days", f"[events.{name}]: half_life_days must be > 0")
            continue
        phrase = spec.get("phrase", name.replace("_", " "))
        if not isinstance(phrase, str):
            problems.add(where, "phrase", f"[events.{name}]: phrase must be a string")
            continue
        out.append(
            TrackedEvent(name, frozenset(n.lower() for n in names), float(half_life), phrase)
        )
    return tuple(out)


def _stage_refs(
    value: Any,
    key: str,
    label: str,
    where: tuple[str, int | None],
    names: Sequence[str],
    problems: _Problems,
) -> frozenset[str] | None:
    if not _str_list(value):
        problems.add(where, key, f"{label}: {key} must be a list of stage names")
        return None
    unknown = [v for v in value if v not in names]
    for v in unknown:
        problems.add(where, key, f"{label}: {key} names unknown stage {v!r}", needle=f'"{v}"')
    return frozenset(v for v in value if v in names)


def _parse_stage(
    i: int, raw: Any, names: Sequence[str], measures: set[str], problems: _Problems
) -> StageSpec | None:
    where = ("stage", i)
    name = names[i]
    label = f"stage {name!r}"
    if not isinstance(raw, dict):
        problems.add(where, "", f"{label} must be a table")
        return None
    for key in sorted(set(raw) - _STAGE_KEYS):
        problems.add(
            where, key, f"{label}: unknown key {key!r} (known: {', '.join(sorted(_STAGE_KEYS))})"
        )
    rules: dict[str, tuple[Rule, ...]] = {}
    for key in ("enter", "exit"):
        texts = raw.get(key, [])
        if not _str_list(texts):
            problems.add(where, key, f"{label}: {key} must be a list of rules (strings)")
            rules[key] = ()
            continue
        parsed = []
        for text in texts:
            try:
                rule = Rule.parse(text)
            except ValueError as exc:
                problems.add(where, key, f"{label}: {key} rule {text!r}: {exc}", needle=text)
                continue
            bad = [c.measure for c in rule.clauses if c.measure not in measures]
            for measure in bad:
                problems.add(
                    where,
                    key,
                    f"{label}: {key} rule {text!r}: unknown measure {measure!r}",
                    needle=text,
                )
            if not bad:
                parsed.append(rule)
        rules[key] = tuple(parsed)
    dormant = raw.get("dormant_days")
    if dormant is not None and (not _number(dormant) or dormant <= 0):
        problems.add(where, "dormant_days", f"{label}: dormant_days must be a positive number")
        dormant = None
    exit_to = raw.get("exit_to", names[i - 1] if i > 0 else None)
    if "exit_to" in raw and exit_to not in names:
        problems.add(where, "exit_to", f"{label}: exit_to names unknown stage {exit_to!r}")
        exit_to = None
    elif exit_to == name:
        problems.add(where, "exit_to", f"{label}: exit_to must be another stage")
        exit_to = None
    if (rules["exit"] or dormant is not None) and exit_to is None and "exit_to" not in raw:
        problems.add(
            where, "exit", f"{label}: has exit rules or dormant_days but nowhere to go: set exit_to"
        )
    next_stage = raw.get("next")
    if next_stage is not None and (next_stage not in names or next_stage == name):
        problems.add(where, "next", f"{label}: next must name another stage (got {next_stage!r})")
        next_stage = None
    from_stages: frozenset[str] | None = frozenset(names[:i])
    if "from" in raw:
        from_stages = _stage_refs(raw["from"], "from", label, where, names, problems)
    if "from" in raw and not rules["enter"]:
        problems.add(where, "from", f"{label}: 'from' without enter rules has no effect")
    customer = raw.get("customer", False)
    if not isinstance(customer, bool):
        problems.add(where, "customer", f"{label}: customer must be true or false")
        customer = False
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.add(where, "description", f"{label}: description must be a string")
        description = ""
    exit_reason = raw.get("exit_reason", "evidence faded")
    if not isinstance(exit_reason, str) or not exit_reason.strip():
        problems.add(where, "exit_reason", f"{label}: exit_reason must be a non-empty string")
        exit_reason = "evidence faded"
    return StageSpec(
        name=name,
        rank=i,
        description=description,
        enter=rules["enter"],
        exit=rules["exit"],
        exit_to=exit_to if isinstance(exit_to, str) else None,
        dormant_days=float(dormant) if dormant is not None else None,
        from_stages=from_stages or frozenset(),
        next=next_stage if isinstance(next_stage, str) else None,
        customer=customer,
        exit_reason=exit_reason,
    )


def _parse_outcomes(raw: Any, names: Sequence[str], problems: _Problems) -> tuple[OutcomeSpec, ...]:
    if not isinstance(raw, list):
        problems.add(("", None), "outcome", "outcomes must be [[outcome]] tables")
        return ()
    out: list[OutcomeSpec] = []
    seen: set[str] = set()
    for i, spec in enumerate(raw):
        where = ("outcome", i)
        if not isinstance(spec, dict):
            problems.add(where, "", f"outcome {i + 1} must be a table")
            continue
        event = spec.get("event")
        label = f"outcome {event!r}" if isinstance(event, str) else f"outcome {i + 1}"
        for key in sorted(set(spec) - _OUTCOME_KEYS):
            problems.add(where, key, f"{label}: unknown key {key!r}")
        if not isinstance(event, str) or not event.strip():
            problems.add(where, "event", f"{label}: event must be a track event name")
            continue
        if event.lower() in seen:
            problems.add(where, "event", f"{label}: defined twice")
        seen.add(event.lower())
        to = spec.get("to")
        if to not in names:
            problems.add(where, "to", f"{label}: to names unknown stage {to!r}")
            continue
        from_stages = None
        if "from" in spec:
            from_stages = _stage_refs(spec["from"], "from", label, where, names, problems)
        hold = spec.get("hold_days", 0.0)
        if not _number(hold) or hold < 0:
            problems.add(where, "hold_days", f"{label}: hold_days must be 0 or more")
            hold = 0.0
        out.append(OutcomeSpec(event.strip(), str(to), from_stages, float(hold)))
    return tuple(out)


def load_stage_model(path: str | Path | None = None) -> StageModel:
    """The stage model in ``path``, or the built-in default for ``None`` / ``""``."""
    if not path:
        return default_stage_model()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise StageConfigError(f"cannot read the stage config {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise StageConfigError(f"the stage config {p} is not UTF-8 text") from None
    return parse_stage_model(text, source=str(p))


def default_stage_model() -> StageModel:
    """The built-in stage model (``intent_stream/stages.default.toml``)."""
    text = resources.files("intent_stream").joinpath(DEFAULT_STAGE_CONFIG).read_text("utf-8")
    return parse_stage_model(text, source=DEFAULT_STAGE_CONFIG)


# -- per-account state -----------------------------------------------------------------------


@dataclass
class StageState:
    """An account's stage, compactly: what it is, since when, and what the models need.

    ``history`` keeps the last few transitions as ``[from, to, at, reason, probability]``;
    :meth:`to_dict` stores an entry whose ``from`` is the previous entry's ``to`` without it.
    """

    stage: str
    since: float
    seq: int = 0
    last_activity: float = 0.0
    last_outcome: float | None = None
    hold_until: float | None = None
    usage: list[float] | None = None  # [short, long, at]
    tracked: dict[str, list[float]] = field(default_factory=dict)  # name -> [value, at]
    advance: list[Any] | None = None  # [stage, t0, x] snapshot for the transition model
    churn: list[Any] | None = None  # [stage, t0, x] snapshot for the churn model
    churn_p: list[float] | None = None  # [probability, at]
    history: list[list[Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "s": self.stage,
            "t": self.since,
            "n": self.seq,
            "a": self.last_activity,
        }
        optional = {
            "o": self.last_outcome,
            "hu": self.hold_until,
            "u": self.usage,
            "e": self.tracked or None,
            "x": _pack_snapshot(self.advance),
            "c": _pack_snapshot(self.churn),
            "cp": self.churn_p,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        out["h"] = _pack_history(self.history)
        return out

    def settle(self) -> None:
        """Make this state, in place, what ``from_dict(self.to_dict())`` would rebuild.

        Only the model snapshots change (:func:`_pack_snapshot`: their time in whole seconds,
        zero evidence left out); the history packs and unpacks to itself, and the other fields
        are stored as they are. An account that a batch updates again continues from what its
        table value would hold, without encoding and decoding it each time.

        >>> s = StageState(stage="evaluation", since=5, seq=2)
        >>> s.advance = ["evaluation", 5.5, {"intent": 0.7, "people": 0, "demo": 1.1}]
        >>> again = StageState.from_dict(s.to_dict()); s.settle()
        >>> s == again, s.advance, s.since
        (True, ['evaluation', 5, {'intent': 0.7, 'demo': 1.1}], 5.0)
        """
        self.since = float(self.since)
        self.seq = int(self.seq)
        self.last_activity = float(self.last_activity)
        if self.advance is not None:
            self.advance = _unpack_snapshot(_pack_snapshot(self.advance))
        if self.churn is not None:
            self.churn = _unpack_snapshot(_pack_snapshot(self.churn))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageState:
        """
        >>> s = StageState(stage="evaluation", since=5.0, seq=2)
        >>> s.history.append([None, "evaluation", 5.0, "demo", None])
        >>> StageState.from_dict(s.to_dict()) == s
        True
        >>> s.advance = ["evaluation", 5.0, {"intent": 0.7, "velocity": 0.3, "demo": 1.1}]
        >>> s.to_dict()["x"]
        ['evaluation', 5, [0.7, 0, 0, 0.3], {'demo': 1.1}]
        >>> StageState.from_dict(s.to_dict()) == s
        True
        """
        return cls(
            stage=data["s"],
            since=float(data["t"]),
            seq=int(data["n"]),
            last_activity=float(data["a"]),
            last_outcome=data.get("o"),
            hold_until=data.get("hu"),
            usage=list(data["u"]) if data.get("u") is not None else None,
            tracked={k: list(v) for k, v in (data.get("e") or {}).items()},
            advance=_unpack_snapshot(data.get("x")),
            churn=_unpack_snapshot(data.get("c")),
            churn_p=data.get("cp"),
            history=stored_history(data),
        )


def stored_history(data: Mapping[str, Any]) -> list[list[Any]]:
    """The ``history`` of a stored :class:`StageState` (:meth:`StageState.to_dict` output)
    without decoding the rest: ``[from, to, at, reason, probability]`` per transition.

    >>> s = StageState(stage="evaluation", since=5.0, seq=2)
    >>> s.history += [[None, "awareness", 1.0, "seen", None], ["awareness", "evaluation", 5.0,
    ...               "demo", 0.4]]
    >>> stored_history(s.to_dict()) == s.history
    True
    """
    return _unpack_history(data.get("h", []))


#: The evidence features (:meth:`Evidence.features`) a stored model snapshot keeps by
#: position, in this order, which never changes (new ones are appended); tracked events'
#: features follow in a mapping by name, as they depend on the stage config.
_EVIDENCE: tuple[str, ...] = (
    "intent",
    "high_intent",
    "people",
    "velocity",
    "usage",
    "usage_trend",
    "active_users",
)
_EVIDENCE_SET = frozenset(_EVIDENCE)


def _pack_snapshot(snapshot: list[Any] | None) -> list[Any] | None:
    """A ``[stage, t0, x]`` model snapshot as stored: ``x`` as values in :data:`_EVIDENCE`
    order (trailing zeros dropped), then the other features by name if any; ``t0`` in whole
    seconds (it is only compared with a horizon of days).

    >>> _pack_snapshot(["awareness", 7.5, {"people": 1.1, "velocity": -0.2}])
    ['awareness', 7, [0, 0, 1.1, -0.2]]
    """
    if snapshot is None:
        return None
    stage, t0, x = snapshot
    values = [x.get(name, 0) for name in _EVIDENCE]
    while values and not values[-1]:
        values.pop()
    extra = {k: v for k, v in x.items() if k not in _EVIDENCE_SET}
    return [stage, math.floor(t0), values, *([extra] if extra else [])]


def _unpack_snapshot(stored: list[Any] | None) -> list[Any] | None:
    """The ``[stage, t0, x]`` snapshot from :func:`_pack_snapshot` output, or as stored before
    it (``x`` a mapping).

    >>> _unpack_snapshot(['awareness', 7, [0, 0, 1.1, -0.2], {'demo': 1.0}])
    ['awareness', 7, {'people': 1.1, 'velocity': -0.2, 'demo': 1.0}]
    >>> _unpack_snapshot(["awareness", 7.5, {"people": 1.1}])
    ['awareness', 7.5, {'people': 1.1}]
    """
    if stored is None:
        return None
    stage, t0, x = stored[:3]
    if isinstance(x, dict):
        return [stage, t0, dict(x)]
    features = {name: v for name, v in zip(_EVIDENCE, x, strict=False) if v}
    if len(stored) > 3:
        features.update(stored[3])
    return [stage, t0, features]


def _pack_history(history: list[list[Any]]) -> list[list[Any]]:
    """Stage history as stored: an entry that starts where the previous one ended leaves out
    its ``from`` (``[to, at, reason, probability]``).

    >>> _pack_history([[None, "a", 1.0, "x", None], ["a", "b", 2.0, "y", 0.5]])
    [[None, 'a', 1.0, 'x', None], ['b', 2.0, 'y', 0.5]]
    """
    out: list[list[Any]] = []
    previous: Any = object()
    for entry in history:
        out.append(entry[1:] if entry[0] == previous else list(entry))
        previous = entry[1]
    return out


def _unpack_history(stored: list[list[Any]]) -> list[list[Any]]:
    """:func:`_pack_history` undone (entries stored whole, as before it, load as they are).

    >>> _unpack_history([[None, "a", 1.0, "x", None], ["b", 2.0, "y", 0.5]])
    [[None, 'a', 1.0, 'x', None], ['a', 'b', 2.0, 'y', 0.5]]
    """
    out: list[list[Any]] = []
    for entry in stored:
        if len(entry) == 4 and out:
            out.append([out[-1][1], *entry])
        else:
            out.append(list(entry))
    return out


def transition_id(
    account_id: str, seq: int, from_stage: str | None, to_stage: str, at: float
) -> str:
    """Deterministic transition id: the same history replayed gives the same ids.

    >>> transition_id("acme.com", 1, None, "awareness", 0.0) == transition_id(
    ...     "acme.com", 1, None, "awareness", 0.0)
    True
    >>> len(transition_id("acme.com", 2, "awareness", "evaluation", 5.0))
    32
    """
    if not at:  # 0.0 and -0.0 are one cache key but format differently: not cached
        return _transition_id(account_id, seq, from_stage, to_stage, at)
    return _cached_transition_id(account_id, seq, from_stage, to_stage, at)


def _transition_id(
    account_id: str, seq: int, from_stage: str | None, to_stage: str, at: float
) -> str:
    key = f"{account_id}\x1f{seq}\x1f{from_stage or ''}\x1f{to_stage}\x1f{at:.3f}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


#: :func:`transition_id` memoised: the read model shows each account's last transitions
#: (``StageMachine.view``) at every flush the account changed in, and a sha256 per entry
#: was most of that. A transition's id is computed first when it is made (``_move``), so
#: the flush that shows it finds it here. Bounded: ~0.4 KB per entry, ~6 MB at most.
#: ``typed``: ids format their arguments, and equal values of other types could format
#: otherwise.
_cached_transition_id = functools.lru_cache(maxsize=_TRANSITION_IDS, typed=True)(_transition_id)


@functools.lru_cache(maxsize=8192)
def _iso(ts: float) -> str:
    return iso_ms(ts)


@dataclass(frozen=True)
class StageTransition:
    """One stage change of one account, ready to publish."""

    transition_id: str
    account_id: str
    seq: int
    from_stage: str | None
    to_stage: str
    at: float
    reason: str
    reasons: tuple[str, ...]
    probability: float | None
    next_stage: str | None
    churn_probability: float | None
    seconds_in_previous: float | None

    def to_payload(self) -> dict[str, Any]:
        """The value published on the stage-transitions topic."""
        return {
            "transition_id": self.transition_id,
            "account_id": self.account_id,
            "seq": self.seq,
            "from": self.from_stage,
            "to": self.to_stage,
            "reason": self.reason,
            "reasons": list(self.reasons),
            "event_time": _iso(self.at),
            "probability": None if self.probability is None else round(self.probability, 3),
            "next": self.next_stage,
            "churn_probability": (
                None if self.churn_probability is None else round(self.churn_probability, 3)
            ),
            "days_in_previous": (
                None
                if self.seconds_in_previous is None
                else round(self.seconds_in_previous / DAY, 2)
            ),
        }


@dataclass
class StageStep:
    """What :meth:`StageMachine.step` returns: the new state and the transitions it made."""

    state: StageState
    transitions: list[StageTransition]


# -- evidence --------------------------------------------------------------------------------


def _decay(value: float, at: float, now: float, half_life_days: float) -> float:
    if now <= at:
        return value
    return value * math.exp(-math.log(2) / (half_life_days * DAY) * (now - at))


def _add_decayed(cell: list[float] | None, ts: float, half_life_days: float) -> list[float]:
    """Add one occurrence at ``ts`` to a ``[value, at]`` cell; late events decay the increment."""
    if cell is None:
        return [1.0, ts]
    value, at = cell
    if ts >= at:
        return [round(_decay(value, at, ts, half_life_days) + 1.0, 4), ts]
    return [round(value + _decay(1.0, ts, at, half_life_days), 4), at]


class Evidence:
    """An account's measures at event time ``now``, computed lazily and cached."""

    def __init__(
        self,
        machine: StageMachine,
        state: StageState,
        *,
        signals: AccountSignals,
        intent_score: float,
        fit: float | None,
        now: float,
    ) -> None:
        self.machine = machine
        self.state = state
        self.signals = signals
        self.intent_score = intent_score
        self.fit = fit
        self.now = now
        self._cache: dict[str, float | None] = {}

    def refresh(self) -> None:
        """Forget cached measures (after the state they read from changed)."""
        self._cache.clear()

    def holds(self, rule: Rule) -> bool:
        """Whether every clause of ``rule`` holds (a plain loop: this runs on every record).

        :meth:`get` and :meth:`Clause.holds`, inline: a record asks a dozen rules.
        """
        cache, compare = self._cache, _COMPARE
        for clause in rule.clauses:
            name = clause.measure
            if name in cache:
                value = cache[name]
            else:
                value = cache[name] = self._compute(name)
            if value is None or not compare.get(clause.op, _LESS)(value, clause.threshold):
                return False
        return True

    def get(self, name: str) -> float | None:
        if name not in self._cache:
            self._cache[name] = self._compute(name)
        return self._cache[name]

    def _compute(self, name: str) -> float | None:
        now, signals, state = self.now, self.signals, self.state
        if name in DEFAULT_SIGNALS:
            return signals.count(name, now)
        tracked = self.machine.tracked.get(name)
        if tracked is not None:
            cell = state.tracked.get(name)
            return 0.0 if cell is None else _decay(cell[0], cell[1], now, tracked.half_life_days)
        if name == "intent_score":
            return self.intent_score
        if name == "fit":
            return self.fit
        if name == "high_intent":
            return sum(signals.count(n, now) for n in HIGH_INTENT)
        if name in ("people", "senior_people"):
            recent = [p for p in signals.people.values() if now - p[0] <= 30 * DAY]
            return float(len(recent) if name == "people" else sum(p[1] for p in recent))
        if name == "velocity":
            return signals.velocity(now)
        if name == "days_in_stage":
            return max(0.0, now - state.since) / DAY
        if name == "usage":
            u = state.usage
            return 0.0 if u is None else _decay(u[1], u[2], now, _USAGE_LONG_DAYS)
        if name == "usage_trend":
            return self._usage_trend()
        if name == "active_users":
            seen = [now - p[0] for p in signals.people.values()]
            active60 = sum(1 for age in seen if age <= 60 * DAY)
            if active60 < _ACTIVE_MIN:
                return 1.0
            return sum(1 for age in seen if age <= 14 * DAY) / active60
        if name == "churn_probability":
            return self.machine.churn_probability(self)
        return None

    def _usage_trend(self) -> float:
        u = self.state.usage
        if u is None:
            return 1.0
        short = _decay(u[0], u[2], self.now, _USAGE_SHORT_DAYS)
        long = _decay(u[1], u[2], self.now, _USAGE_LONG_DAYS)
        if long < _USAGE_MIN:
            return 1.0
        # A steady rate r gives decayed counts r*h/ln2 at both speeds: the ratio of rates is 1.
        return (short / _USAGE_SHORT_DAYS) / (long / _USAGE_LONG_DAYS)

    def features(self) -> dict[str, float]:
        """The compact evidence vector the transition and churn models learn from."""
        x = {
            "intent": round(self.intent_score / 100.0, 3),
            "high_intent": math.log1p(self.get("high_intent") or 0.0),
            "people": math.log1p(self.get("people") or 0.0),
            "velocity": math.log(self.get("velocity") or 1.0),
            "usage": math.log1p(self.get("usage") or 0.0),
            "usage_trend": min(3.0, self.get("usage_trend") or 1.0),
            "active_users": self.get("active_users") or 0.0,
        }
        for name in self.machine.tracked:
            x[name] = math.log1p(self.get(name) or 0.0)
        # Zeros are left out: the regression reads a missing feature as 0, and state stays small.
        return {k: r for k, v in x.items() if (r := round(v, 2))}

    def describe(self, clause: Clause) -> str:
        """A clause that held, in plain words with the account's value."""
        value = self.get(clause.measure) or 0.0
        rising = clause.op in (">=", ">")
        name = clause.measure
        spec = DEFAULT_SIGNALS.get(name)
        tracked = self.machine.tracked.get(name)
        if rising and spec is not None:
            times = max(1, round(value))
            return f"{spec.phrase} ({times} time{'s' if times != 1 else ''} recently)"
        if rising and tracked is not None:
            return f"{tracked.phrase} ({max(1, round(value))} recently)"
        if name == "usage_trend":
            if value < 1.0:
                return f"product usage fell {1.0 - value:.0%} against the previous weeks"
            return f"product usage at {value:.0%} of its recent rate"
        if name == "active_users":
            if rising:
                return f"{value:.0%} of the people active in the last 60 days still active"
            return f"only {value:.0%} of the people active in the last 60 days were active lately"
        if name == "churn_probability":
            days = self.machine.model.churn_horizon_days
            return f"churn model: {value:.0%} likely to churn within {days:g} days"
        if name == "intent_score":
            return f"intent score {value:.0f}"
        if name == "people":
            return f"{value:.0f} people engaged in the last 30 days"
        if name == "high_intent" and rising:
            return f"high-intent activity ({value:.1f} recently)"
        label = spec.phrase if spec else tracked.phrase if tracked else name.replace("_", " ")
        if rising:
            return f"{label}: {value:.2g} (at least {clause.threshold:g})"
        return f"{label}: only {value:.2g} recently (below {clause.threshold:g})"


# -- the machine -----------------------------------------------------------------------------


class StageMachine:
    """Moves accounts between the stages of ``model``; learns the transition and churn models.

    Shared by every account of a worker (like the intent model); per-account state lives in
    :class:`StageState`, kept by the caller in the account's table value.
    """

    def __init__(
        self,
        *,
        model: StageModel,
        advance: TransitionModel | None = None,
        churn: TransitionModel | None = None,
    ) -> None:
        self.model = model
        self.advance = (
            advance if advance is not None else TransitionModel(horizon_days=model.horizon_days)
        )
        self.churn = (
            churn
            if churn is not None
            else TransitionModel(horizon_days=model.churn_horizon_days, prior=0.1)
        )
        self.tracked = {e.name: e for e in model.events}
        self._by_event = {n: e for e in model.events for n in e.names}
        self._outcomes = {o.event.lower(): o for o in model.outcomes}
        # Candidates for evidence entry from each stage, last-listed first (it wins a tie).
        self._entries = {
            s.name: [c for c in reversed(model.stages) if c.enter and s.name in c.from_stages]
            for s in model.stages
        }
        self._ahead = {s.name: model.ahead(s.name) for s in model.stages}

    # -- public -----------------------------------------------------------------------------

    def step(
        self,
        state: StageState | None,
        *,
        account_id: str,
        events: Iterable[tuple[float, Mapping[str, Any]]],
        signals: AccountSignals,
        intent_score: float,
        now: float,
        fit: float | None = None,
    ) -> StageStep:
        """Apply one record's ``(event time, Segment body)`` events and the evidence at ``now``."""
        ordered = sorted(events, key=lambda e: e[0])
        out: list[StageTransition] = []
        first = ordered[0][0] if ordered else now
        new = state is None
        if state is None:
            state = StageState(stage=self.model.initial, since=first, last_activity=first)
        ev = Evidence(self, state, signals=signals, intent_score=intent_score, fit=fit, now=now)
        if new:
            state.stage = ""
            self._move(
                state, ev, account_id, self.model.initial, first, ["first activity seen"], out
            )
        overridden = False
        for ts, body in ordered:
            self._dormancy(state, ev, account_id, ts, out)
            state.last_activity = max(state.last_activity, ts)
            self._observe(state, ts, body)
            name = body.get("event") if body.get("type") == "track" else None
            outcome = self._outcomes.get(name.lower()) if isinstance(name, str) else None
            if outcome is not None:
                overridden |= self._override(state, ev, account_id, outcome, ts, name or "", out)
        ev.refresh()  # usage and tracked events changed
        if not overridden:  # a record with a CRM outcome is decided by the outcome
            self._evaluate(state, ev, account_id, max(now, state.since), out)
        self._expire(state, ev, now)
        return StageStep(state, out)

    def churn_probability(self, ev: Evidence) -> float | None:
        """P(churn within the churn horizon) for customer stages; refreshed once a day."""
        state = ev.state
        spec = self.model.by_name.get(state.stage)
        if spec is None or not spec.customer:
            return None
        cached = state.churn_p
        if cached is not None and 0 <= ev.now - cached[1] < _CHURN_REFRESH:
            return cached[0]
        p = self.churn.predict_one(ev.features(), stage=state.stage)
        state.churn_p = [round(p, 4), ev.now]
        return p

    def view(self, account_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """The stage part of an account's read-model snapshot (from its stored state).

        Reads only the fields it shows (as :meth:`StageState.from_dict` would decode them):
        this runs for every account of every read-model flush.
        """
        history = stored_history(data)
        first_seq = int(data["n"]) - len(history) + 1
        return {
            "stage": data["s"],
            "stage_since": _iso(float(data["t"])),
            "stage_history": [
                {
                    "transition_id": transition_id(account_id, first_seq + k, h[0], h[1], h[2]),
                    "from": h[0],
                    "to": h[1],
                    "at": _iso(h[2]),
                    "reason": h[3],
                    "probability": h[4],
                }
                for k, h in enumerate(history)
            ],
        }

    # -- the steps --------------------------------------------------------------------------

    def _observe(self, state: StageState, ts: float, body: Mapping[str, Any]) -> None:
        kind = body.get("type")
        usage = False  # whether the event is product usage (its signal, as classify says)
        if kind == "track":
            name = body.get("event")
            if isinstance(name, str):
                lowered = name.lower()
                tracked = self._by_event.get(lowered)
                if tracked is not None:
                    state.tracked[tracked.name] = _add_decayed(
                        state.tracked.get(tracked.name), ts, tracked.half_life_days
                    )
                usage = TRACK_SIGNALS.get(lowered) == _USAGE
        elif kind in ("page", "screen"):
            # Pages are never product usage: classify, which reads their path, is skipped.
            usage = _PAGE_USAGE and classify(body) == _USAGE
        if usage:
            u = state.usage
            if u is None:
                state.usage = [1.0, 1.0, ts]
            elif ts >= u[2]:
                state.usage = [
                    round(_decay(u[0], u[2], ts, _USAGE_SHORT_DAYS) + 1.0, 4),
                    round(_decay(u[1], u[2], ts, _USAGE_LONG_DAYS) + 1.0, 4),
                    ts,
                ]
            else:  # late: decay the increment to the stored time
                u[0] = round(u[0] + _decay(1.0, ts, u[2], _USAGE_SHORT_DAYS), 4)
                u[1] = round(u[1] + _decay(1.0, ts, u[2], _USAGE_LONG_DAYS), 4)

    def _dormancy(
        self,
        state: StageState,
        ev: Evidence,
        account_id: str,
        ts: float,
        out: list[StageTransition],
    ) -> None:
        """Fall back for each stage whose dormancy ran out before ``ts``, stamped when it did."""
        for _ in range(len(self.model.stages)):
            spec = self.model.by_name[state.stage]
            if spec.dormant_days is None or spec.exit_to is None:
                return
            ends = state.last_activity + spec.dormant_days * DAY
            if ts < ends:
                return
            reason = f"no activity for {spec.dormant_days:g} days"
            self._move(state, ev, account_id, spec.exit_to, max(ends, state.since), [reason], out)

    def _override(
        self,
        state: StageState,
        ev: Evidence,
        account_id: str,
        outcome: OutcomeSpec,
        ts: float,
        event: str,
        out: list[StageTransition],
    ) -> bool:
        """Apply a CRM outcome; True if it moved the account."""
        if state.last_outcome is not None and ts < state.last_outcome:
            return False  # a late outcome older than one already applied does not undo it
        state.last_outcome = ts
        if outcome.from_stages is not None and state.stage not in outcome.from_stages:
            return False
        if state.stage == outcome.to:
            return False
        at = max(ts, state.since)
        self._move(state, ev, account_id, outcome.to, at, [f"CRM outcome: {event}"], out)
        if outcome.hold_days:
            state.hold_until = at + outcome.hold_days * DAY
        return True

    def _evaluate(
        self,
        state: StageState,
        ev: Evidence,
        account_id: str,
        at: float,
        out: list[StageTransition],
    ) -> None:
        """At most one evidence transition per step: an exit first, else the best entry."""
        spec = self.model.by_name[state.stage]
        for rule in spec.exit:
            if spec.exit_to is not None and ev.holds(rule):
                why = [ev.describe(c) for c in rule.clauses]
                self._move(
                    state,
                    ev,
                    account_id,
                    spec.exit_to,
                    at,
                    [f"{spec.exit_reason}: {why[0]}", *why[1:]],
                    out,
                )
                return
        if state.hold_until is not None and at < state.hold_until:
            return
        for candidate in self._entries[state.stage]:
            for rule in candidate.enter:
                if ev.holds(rule):
                    why = [ev.describe(c) for c in rule.clauses]
                    self._move(state, ev, account_id, candidate.name, at, why, out)
                    return

    def _expire(self, state: StageState, ev: Evidence, now: float) -> None:
        """Learn a negative label for snapshots whose horizon passed; start new ones."""
        if state.advance is not None and now - state.advance[1] > self.advance.horizon_s:
            stage, _, x = state.advance
            self.advance.learn_one(x, False, stage=stage)
            state.advance = [state.stage, now, ev.features()]
        if state.churn is not None and now - state.churn[1] > self.churn.horizon_s:
            stage, _, x = state.churn
            self.churn.learn_one(x, False, stage=stage)
            state.churn = [state.stage, now, ev.features()]
            state.churn_p = None

    def _move(
        self,
        state: StageState,
        ev: Evidence,
        account_id: str,
        to: str,
        at: float,
        reasons: list[str],
        out: list[StageTransition],
    ) -> None:
        frm = state.stage or None
        spec = self.model.by_name[to]
        x = ev.features()
        # Resolve the snapshots: did the account reach what each model predicts, in time?
        if state.advance is not None:
            stage0, t0, x0 = state.advance
            advanced = to in self._ahead.get(stage0, set())
            self.advance.learn_one(x0, advanced and at - t0 <= self.advance.horizon_s, stage=stage0)
            state.advance = None
        churned = to == self.model.churn_stage
        if state.churn is not None and (churned or not spec.customer):
            stage0, t0, x0 = state.churn
            self.churn.learn_one(x0, churned and at - t0 <= self.churn.horizon_s, stage=stage0)
            state.churn = None
        if spec.next is not None:
            state.advance = [to, at, x]
        if spec.customer and state.churn is None:
            state.churn = [to, at, x]
        state.churn_p = None
        probability = self.advance.predict_one(x, stage=to) if spec.next is not None else None
        churn_p = self.churn.predict_one(x, stage=to) if spec.customer else None
        seconds_in_previous = at - state.since if frm is not None else None
        state.seq += 1
        state.stage = to
        state.since = at
        reason = "; ".join(reasons)
        tid = transition_id(account_id, state.seq, frm, to, at)
        state.history.append(
            [
                frm,
                to,
                at,
                reason[:_REASON_CHARS],
                None if probability is None else round(probability, 3),
            ]
        )
        del state.history[: -self.model.history]
        out.append(
            StageTransition(
                transition_id=tid,
                account_id=account_id,
                seq=state.seq,
                from_stage=frm,
                to_stage=to,
                at=at,
                reason=reason,
                reasons=tuple(reasons),
                probability=probability,
                next_stage=spec.next,
                churn_probability=churn_p,
                seconds_in_previous=seconds_in_previous,
            )
        )

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
