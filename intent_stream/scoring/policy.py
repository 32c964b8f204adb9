"""When an account becomes a hot-lead alert: rules, fit gating, one shared cooldown, routing.

Three rules can fire for an account, each at most once per record:

* ``intent_threshold``: the intent score reaches ``enter`` (hysteresis: re-armed only after
  the score falls below ``exit``);
* ``stage_entry``: the account enters one of ``stages`` (``evaluation``, ``purchase``);
* ``topic_surge``: a topic surge starts (:meth:`TopicSurge.learn_one` returned ``True``)
  while the intent score is at least ``surge_min_score``: reading more about a topic than
  usual is a lead's *reason*, not enough on its own (out-of-market accounts surge too).

**Fit gating**: weak-fit accounts need more evidence: their enter threshold is raised by
``weak_fit_points``, and their surge and stage alerts need an intent score of at least
``weak_fit_min_score``. **One cooldown per account**, shared by the rules: within
``cooldown_s`` (event time) of an account's last alert nothing fires, and rules that fire in
the same record make *one* alert naming them all (``rule`` is the first of :data:`RULES` that
fired). Alerts are numbered per account (``episode``); :func:`alert_id` of (account, rule,
episode) is deterministic, so a replay gives the same ids.

>>> p = HotLeadPolicy(enter=70, exit=50, cooldown_s=100)
>>> s, d = p.decide_one(PolicyState(), score=75, ts=0)
>>> d.rules, s.episode
(('intent_threshold',), 1)
>>> p.decide_one(s, score=80, ts=10)[1].fired  # disarmed until the score falls below exit
False
>>> s, d = p.decide_one(s, score=60, ts=200, stages=("evaluation",), surges=("security",))
>>> d.rule, d.rules, s.episode
('stage_entry', ('stage_entry', 'topic_surge'), 2)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from intent_stream.scoring.fit import parse_number

__all__ = [
    "DEFAULT_ALERT_STAGES",
    "REGIONS",
    "RULES",
    "RULE_INTENT",
    "RULE_STAGE",
    "RULE_SURGE",
    "AlertDecision",
    "AlertRouter",
    "HotLeadPolicy",
    "PolicyState",
    "Route",
    "RouteError",
    "alert_id",
    "region_of",
]

RULE_INTENT = "intent_threshold"
RULE_STAGE = "stage_entry"
RULE_SURGE = "topic_surge"
#: Every rule, in priority order: a combined alert's ``rule`` is the first of these that fired.
RULES: tuple[str, ...] = (RULE_INTENT, RULE_STAGE, RULE_SURGE)
DEFAULT_ALERT_STAGES: tuple[str, ...] = ("evaluation", "purchase")

#: Why a rule that fired made no alert (``intent_stream_alert_triggers_total{outcome}``).
SUPPRESSED_COOLDOWN = "cooldown"
SUPPRESSED_WEAK_FIT = "weak_fit"
SUPPRESSED_LOW_INTENT = "low_intent"


@dataclass(frozen=True)
class PolicyState:
    """Per-account alert state; the ``last_*`` fields describe the account at its last alert.

    Stored compactly (:meth:`to_dict` leaves out what is unset, and the rule when it is
    ``intent_threshold``, the only rule before there were several); states written before a
    field existed load with its default.

    >>> PolicyState.from_dict({"a": True, "e": 2, "t": 5.0})  # an older stored state
    PolicyState(armed=True, episode=2, last_alert_ts=5.0, last_rule='intent_threshold', \
last_score=None, last_stage=None, last_topics=(), last_people=None)
    """

    armed: bool = True
    episode: int = 0
    last_alert_ts: float | None = None
    last_rule: str | None = None
    last_score: float | None = None
    last_stage: str | None = None
    last_topics: tuple[str, ...] = ()
    last_people: int | None = None

    def __post_init__(self) -> None:
        if self.last_rule is None and self.episode > 0:
            # Alerts made before there were several rules were all intent_threshold alerts.
            object.__setattr__(self, "last_rule", RULE_INTENT)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"a": self.armed, "e": self.episode, "t": self.last_alert_ts}
        optional = {
            "r": None if self.last_rule == RULE_INTENT else self.last_rule,
            "s": self.last_score,
            "g": self.last_stage,
            "x": list(self.last_topics) or None,
            "p": self.last_people,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyState:
        """Rebuild from :meth:`to_dict` output (also from states without the newer fields)."""
        return cls(
            armed=bool(data["a"]),
            episode=int(data["e"]),
            last_alert_ts=data["t"],
            last_rule=data.get("r"),
            last_score=data.get("s"),
            last_stage=data.get("g"),
            last_topics=tuple(data.get("x") or ()),
            last_people=data.get("p"),
        )

    def remember(
        self,
        *,
        score: float,
        stage: str | None,
        topics: Iterable[str],
        people: int,
    ) -> PolicyState:
        """This state with the account's look at an alert kept, for the next alert's news."""
        return replace(
            self,
            last_score=round(score, 1),
            last_stage=stage,
            last_topics=tuple(sorted(topics)[:3]),
            last_people=people,
        )


@dataclass(frozen=True)
class AlertDecision:
    """What :meth:`HotLeadPolicy.decide_one` decided for one account and record.

    ``rules``: the rules of the alert to send (empty: none); ``suppressed``: rules that fired
    but were held back, with why (``cooldown``, ``weak_fit`` or ``low_intent``);
    ``threshold``: the enter threshold that applied (raised for weak fit).
    """

    rules: tuple[str, ...] = ()
    suppressed: tuple[tuple[str, str], ...] = ()
    threshold: float = 0.0
    stages: tuple[str, ...] = ()
    surges: tuple[str, ...] = ()

    @property
    def fired(self) -> bool:
        return bool(self.rules)

    @property
    def rule(self) -> str | None:
        """The alert's primary rule (the first of :data:`RULES` that fired)."""
        return self.rules[0] if self.rules else None


class HotLeadPolicy:
    """Decides per account and record whether to alert, and for which rules.

    Parameters
    ----------
    enter, exit
        Intent threshold and its re-arm level (``exit <= enter``).
    cooldown_s
        Event-time seconds after an account's alert during which no rule alerts again.
    rules
        The rules in use (any of :data:`RULES`).
    stages
        Stages whose entry alerts (``stage_entry``).
    weak_fit_points
        Added to ``enter`` for accounts whose fit band is ``weak``.
    weak_fit_min_score
        Intent score a weak-fit account needs for a surge or stage alert.
    surge_min_score
        Intent score any account needs for a surge alert (a surge below it is held back as
        ``low_intent``).
    router
        Suggests an owner or queue from the account's traits (:class:`AlertRouter`).
    show_emails
        Whether person ids that are email addresses may be shown in alerts.
    """

    def __init__(
        self,
        *,
        enter: float = 70.0,
        exit: float = 50.0,
        cooldown_s: float = 86400.0,
        rules: Iterable[str] = RULES,
        stages: Iterable[str] = DEFAULT_ALERT_STAGES,
        weak_fit_points: float = 10.0,
        weak_fit_min_score: float = 50.0,
        surge_min_score: float = 30.0,
        router: AlertRouter | None = None,
        show_emails: bool = False,
    ) -> None:
        if exit > enter:
            raise ValueError("exit must not exceed enter")
        rules = tuple(rules)
        unknown = set(rules) - set(RULES)
        if unknown:
            raise ValueError(f"unknown alert rule(s): {', '.join(sorted(unknown))}")
        self.enter = enter
        self.exit = exit
        self.cooldown_s = cooldown_s
        self.rules = tuple(r for r in RULES if r in set(rules))
        self.stages = tuple(stages)
        self.weak_fit_points = weak_fit_points
        self.weak_fit_min_score = weak_fit_min_score
        self.surge_min_score = surge_min_score
        self.router = router if router is not None else AlertRouter()
        self.show_emails = show_emails
        self._nothing_decision = AlertDecision(threshold=self.enter)

    def _nothing(self) -> AlertDecision:
        """The decision when no rule fires (most records): immutable, so made once."""
        if self._nothing_decision.threshold is not self.enter:  # enter was changed
            self._nothing_decision = AlertDecision(threshold=self.enter)
        return self._nothing_decision

    def threshold(self, fit_band: str) -> float:
        """The intent enter threshold for an account of ``fit_band``.

        >>> HotLeadPolicy(enter=70, weak_fit_points=10).threshold("weak")
        80.0
        """
        return float(self.enter + (self.weak_fit_points if fit_band == "weak" else 0.0))

    def _surge_gate(self, weak: bool, score: float) -> str | None:
        """Why a surge that started is held back (``None``: it alerts)."""
        if weak:
            return SUPPRESSED_WEAK_FIT
        return SUPPRESSED_LOW_INTENT if score < self.surge_min_score else None

    def decide_one(
        self,
        state: PolicyState,
        *,
        score: float,
        ts: float,
        fit_band: str | Callable[[], str] = "moderate",
        stages: Sequence[str] = (),
        surges: Sequence[str] = (),
    ) -> tuple[PolicyState, AlertDecision]:
        """The new state and the decision, after a record moved the account to ``score``.

        ``stages``: stages the account entered in the record; ``surges``: topics whose surge
        started in it. ``fit_band`` may be a callable, called only when some rule fires (the
        fit score costs a model prediction).

        >>> p = HotLeadPolicy(enter=70, exit=50, cooldown_s=0)
        >>> p.decide_one(PolicyState(), score=75, ts=0, fit_band="weak")[1].suppressed
        (('intent_threshold', 'weak_fit'),)
        """
        armed = state.armed
        if not armed and score < self.exit:
            armed = True
        entered = tuple(s for s in stages if s in self.stages) if RULE_STAGE in self.rules else ()
        started = tuple(surges) if RULE_SURGE in self.rules else ()
        intent = RULE_INTENT in self.rules and armed and score >= self.enter
        if not (intent or entered or started):
            new = state if armed == state.armed else replace(state, armed=armed)
            return new, self._nothing()
        band = fit_band() if callable(fit_band) else fit_band
        threshold = self.threshold(band)
        fired: list[str] = []
        held: list[tuple[str, str]] = []
        weak = band == "weak" and score < self.weak_fit_min_score
        for rule, triggered, held_as in (
            (RULE_INTENT, intent, SUPPRESSED_WEAK_FIT if score < threshold else None),
            (RULE_STAGE, bool(entered), SUPPRESSED_WEAK_FIT if weak else None),
            (RULE_SURGE, bool(started), self._surge_gate(weak, score)),
        ):
            if triggered:
                (held.append((rule, held_as)) if held_as else fired.append(rule))
        cooling = state.last_alert_ts is not None and ts - state.last_alert_ts < self.cooldown_s
        if cooling and fired:
            held += [(rule, SUPPRESSED_COOLDOWN) for rule in fired]
            fired = []
        if not fired:
            new = state if armed == state.armed else replace(state, armed=armed)
            return new, AlertDecision(
                suppressed=tuple(held), threshold=threshold, stages=entered, surges=started
            )
        new = replace(
            state,
            armed=armed and RULE_INTENT not in fired,
            episode=state.episode + 1,
            last_alert_ts=ts,
            last_rule=fired[0],
        )
        decision = AlertDecision(
            rules=tuple(fired),
            suppressed=tuple(held),
            threshold=threshold,
            stages=entered,
            surges=started,
        )
        return new, decision

    def decide(self, state: PolicyState, *, score: float, ts: float) -> tuple[PolicyState, bool]:
        """The intent threshold alone (the policy before rules): new state, and whether to alert.

        >>> HotLeadPolicy(enter=70, exit=50).decide(PolicyState(), score=75, ts=0)[1]
        True
        """
        new, decision = self.decide_one(state, score=score, ts=ts)
        return new, decision.fired


def alert_id(account_id: str, rule: str, episode: int) -> str:
    """Deterministic alert id: a replay of the same history yields the same id.

    >>> alert_id("acme.com", "intent_threshold", 1)
    'e20394aebf50fd9e0aee6f11ab01c682'
    """
    return hashlib.sha256(f"{account_id}\x1f{rule}\x1f{episode}".encode()).hexdigest()[:32]


# -- routing: a suggested owner or queue from the account's traits --------------------------

_REGION_CODES: Mapping[str, tuple[str, ...]] = {
    "NA": ("us", "ca", "usa", "united states", "united states of america", "canada"),
    "LATAM": (
        "mx", "br", "ar", "cl", "co", "pe", "uy", "ec", "ve", "cr", "pa", "do", "gt",
        "mexico", "brazil", "argentina", "chile", "colombia", "peru",
    ),
    "APAC": (
        "au", "nz", "jp", "cn", "hk", "tw", "kr", "sg", "in", "id", "my", "th", "vn", "ph",
        "australia", "new zealand", "japan", "china", "hong kong", "taiwan", "south korea",
        "korea", "singapore", "india", "indonesia", "malaysia", "thailand", "vietnam",
        "philippines",
    ),
    "EMEA": (
        "gb", "uk", "ie", "fr", "de", "at", "ch", "nl", "be", "lu", "es", "pt", "it", "dk",
        "se", "no", "fi", "is", "pl", "cz", "sk", "hu", "ro", "bg", "gr", "ee", "lv", "lt",
        "si", "hr", "rs", "ua", "tr", "il", "ae", "sa", "qa", "eg", "za", "ng", "ke", "ma",
        "united kingdom", "great britain", "england", "ireland", "france", "germany",
        "deutschland", "austria", "switzerland", "netherlands", "belgium", "spain",
        "portugal", "italy", "denmark", "sweden", "norway", "finland", "poland",
        "czech republic", "czechia", "hungary", "romania", "greece", "turkey", "israel",
        "united arab emirates", "uae", "saudi arabia", "egypt", "south africa", "nigeria",
        "kenya",
    ),
}  # fmt: skip
#: Country (ISO 3166 alpha-2 code or common English name, case-folded) -> sales region.
REGIONS: Mapping[str, str] = {c: r for r, codes in _REGION_CODES.items() for c in codes}


def region_of(country: Any) -> str | None:
    """The sales region (NA, LATAM, EMEA, APAC) of a country code or name, else ``None``.

    >>> region_of("DE"), region_of(" United States "), region_of("Atlantis"), region_of(None)
    ('EMEA', 'NA', None, None)
    """
    if not isinstance(country, str):
        return None
    return REGIONS.get(" ".join(country.split()).casefold())


class RouteError(ValueError):
    """A routing rule that cannot be parsed; the message quotes it."""


_CONDITION = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|!=|=|>|<)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Route:
    """Where an alert should go: the owner or queue, which rule chose it, the region."""

    owner: str
    matched: str
    region: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return {"owner": self.owner, "matched": self.matched, "region": self.region}


@dataclass(frozen=True)
class _Rule:
    text: str
    owner: str
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = field(default=())


class AlertRouter:
    """Suggests an owner or queue for an account's alert, from its traits.

    ``rules`` is ``;``-separated ``CONDITIONS -> OWNER`` entries, tried in order; the first
    whose conditions all hold wins. Conditions are ``&``-separated ``FIELD OP VALUE``: ``=``
    and ``!=`` compare text case-insensitively (``|`` separates alternatives), ``>``,
    ``>=``, ``<``, ``<=`` compare numbers (``employees>=1000``). Fields are the account's
    traits (``country``, ``industry``, ``employees``, ``plan``), ``region`` (from the
    country) and ``fit_band``; ``*`` alone matches every account. Without a match the owner
    is ``default`` with ``{region}`` replaced by the lower-cased region (``unknown``).

    >>> r = AlertRouter(
    ...     "region=EMEA & employees>=1000 -> emea-enterprise; industry=bank|finance -> fs"
    ... )
    >>> r.route({"country": "DE", "employees": "5,000"})
    Route(owner='emea-enterprise', matched='region=EMEA & employees>=1000', region='EMEA')
    >>> r.route({"country": "US", "industry": "Finance"}).owner
    'fs'
    >>> r.route({"country": "JP"}), r.route({})
    (Route(owner='sales-apac', matched='default', region='APAC'), \
Route(owner='sales-unknown', matched='default', region=None))
    """

    def __init__(self, rules: str = "", *, default: str = "sales-{region}") -> None:
        self.rules = rules
        self.default = default
        self._parsed = tuple(_parse_rule(text) for text in rules.split(";") if text.strip())

    def route(self, traits: Mapping[str, Any], *, fit_band: str | None = None) -> Route:
        """The route of an account with ``traits`` (and fit band, if known)."""
        region = region_of(traits.get("country"))
        fields: dict[str, Any] = {**traits, "region": region, "fit_band": fit_band}
        for rule in self._parsed:
            if all(_holds(fields.get(name), op, values) for name, op, values in rule.conditions):
                return Route(owner=rule.owner, matched=rule.text, region=region)
        owner = self.default.replace("{region}", (region or "unknown").lower())
        return Route(owner=owner, matched="default", region=region)


def _parse_rule(text: str) -> _Rule:
    conditions_text, arrow, owner = text.partition("->")
    owner, conditions_text = owner.strip(), conditions_text.strip()
    if not arrow or not owner or not conditions_text:
        raise RouteError(f"routing rule {text.strip()!r} is not 'CONDITIONS -> OWNER'")
    if conditions_text == "*":
        return _Rule(text="*", owner=owner)
    conditions = []
    for part in conditions_text.split("&"):
        match = _CONDITION.match(part.lower())
        if match is None:
            raise RouteError(f"condition {part.strip()!r} of routing rule {text.strip()!r}")
        name, op, value = match.groups()
        values = tuple(v.strip() for v in value.split("|") if v.strip())
        if op in (">", ">=", "<", "<=") and (len(values) != 1 or parse_number(values[0]) is None):
            raise RouteError(f"{part.strip()!r} in routing rule {text.strip()!r} needs a number")
        conditions.append((name, op, values))
    return _Rule(text=conditions_text, owner=owner, conditions=tuple(conditions))


def _holds(value: Any, op: str, values: tuple[str, ...]) -> bool:
    if op in ("=", "!="):
        text = " ".join(str(value).split()).casefold() if value is not None else None
        return (text in values) == (op == "=")
    number = (
        float(value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else parse_number(value)
        if isinstance(value, str)
        else None
    )
    if number is None:
        return False
    bound = parse_number(values[0])
    assert bound is not None  # checked when the rule was parsed
    return {">": number > bound, ">=": number >= bound, "<": number < bound}.get(
        op, number <= bound
    )
