"""Seeded, deterministic simulation of B2B buyer journeys as Segment-spec events.

The generator stands in for the trackers, marketing automation, webinar platform, product
telemetry and CRM that feed the engine in production, so the engine can be demonstrated,
tested and benchmarked on journeys whose truth is known.

The world
---------
Each account has firmographics (industry, a skewed head count, country and time zone), a
hidden *fit* to the vendor's ideal customer profile, a *propensity* to buy correlated with
fit, a buying committee of 2-8 people with roles and seniority, and topics of interest. Every
account also has a *kind*:

``buyer``
    enters an active buying journey (about ``buyer_share`` of accounts, more often when the
    fit is good): awareness -> consideration -> evaluation -> purchase, with noisy dwell
    times; it may stall (fall back a stage for a while) or drop out. Reaching the end of
    evaluation creates an opportunity a few days later, won (about 2 in 7, more often the
    higher the propensity) or lost weeks to months after that, larger buyers taking longer;
    some won customers later churn.
``passive``
    an out-of-market account of the vendor's market: email opens and the odd blog post, an
    occasional awareness episode, and now and then a short consideration blip that regresses.
``customer``
    an existing customer: product usage, docs, and churn at an annual rate of 6-25% by size
    (with an *at_risk* period first, when usage falls and comparison pages get read).
``researcher``, ``competitor``, ``drive_by``
    background noise: students and consultants reading content with free-mail addresses,
    competitors studying pricing and comparison pages, one-off visitors.

Activity is a non-homogeneous Poisson process whose rate and mix of actions depend on the
hidden stage, with business hours and weekends in the account's local time. People browse
anonymously (``anonymousId`` only) until a form fill or an email click identifies them; from
then on their web events carry ``userId`` and ``context.traits.email`` too; existing
customers' users are known from the start, and their first visit of the window logs in (an
``identify`` with their traits, and the company's ``group`` call). Email, webinar,
product-usage and CRM events come from server-side sources and carry ``userId`` only.

Visits come from organic and paid search, organic and paid social, display retargeting,
referring sites, a partner marketplace, email or nowhere (direct); the landing page carries
the referrer, and a campaign's UTM parameters (``context.campaign``) stay on every page and
web event of the visit, as a tracker that keeps them for the session sends them. Downloads,
webinars and emails say what they are in ``properties.content_type`` (the marketing view,
:mod:`intent_stream.marketing`).

Determinism and memory
----------------------
Each account's plan (firmographics, committee roles, stage timeline and outcomes) comes from
its own ``random.Random`` derived from the seed and the account's index, so
:func:`ground_truth` computes it without generating any event. Events come from one
``random.Random(seed)`` and a discrete-event loop: a heap of pending account actions in time
order and a small heap of generated events, released once no pending action can produce an
earlier one; the CRM's events are then held until their sync (``crm_sync_minutes``).
Memory grows with the number of accounts (each plan, the people met so far), not with the
number of events: pending events span minutes of simulated time, held ones a sync period.

>>> config = SimulationConfig(accounts=20, days=30, seed=7)
>>> events = list(simulate(config))
>>> events == list(simulate(config))
True
>>> all(e["context"]["groupId"] for e in events)
True
>>> events[0]["timestamp"] <= events[-1]["timestamp"]
True
>>> truth = ground_truth(config)
>>> len(truth), truth[0].stages[0][0]
(20, '2026-01-01T00:00:00.000Z')
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from intent_stream.events import MAX_EVENT_TIME, MIN_EVENT_TIME

__all__ = [
    "CRM_EVENTS",
    "HIGH_INTENT_EVENTS",
    "KINDS",
    "STAGES",
    "AccountTruth",
    "SimulationConfig",
    "churn_within",
    "ground_truth",
    "sales_cycle_days",
    "simulate",
    "win_probability",
    "write_jsonl",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Hidden stages, in journey order. ``at_risk`` and ``churned`` follow ``customer``.
STAGES = (
    "out_of_market",
    "awareness",
    "consideration",
    "evaluation",
    "purchase",
    "customer",
    "at_risk",
    "churned",
)
#: Account kinds; only ``buyer`` accounts enter an active buying journey.
KINDS = ("buyer", "passive", "customer", "researcher", "competitor", "drive_by")
#: Track events that mark late-stage intent (used by tests and benchmarks as a yardstick).
HIGH_INTENT_EVENTS = frozenset({"Pricing Viewed", "Demo Requested", "Trial Started"})
#: Track events the CRM records and a periodic sync delivers, after the fact
#: (``SimulationConfig.crm_sync_minutes``).
CRM_EVENTS = frozenset({"Opportunity Created", "Deal Won", "Deal Lost", "Subscription Cancelled"})

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
_SITE = "https://www.vendor.example"

# Stage rank: who in the committee is active (people join at a rank) and how far along.
_RANK = {
    "out_of_market": 0,
    "awareness": 1,
    "consideration": 2,
    "evaluation": 3,
    "purchase": 4,
    "customer": 5,
    "at_risk": 5,
    "churned": 5,
}


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """What to simulate.

    Parameters
    ----------
    accounts : int
        Number of accounts (all kinds, noise included).
    days : float
        Length of the simulated window in days.
    seed : int
        Seed; the same configuration always yields the same events.
    start : datetime or None
        Start of the simulated clock (UTC; a naive value is taken as UTC);
        ``None`` means 2026-01-01T00:00:00Z.
    buyer_share : float
        Expected share of accounts that enter an active buying journey.
    reveal_share : float
        Share of anonymous visitors whose events carry their account in ``context.groupId``
        before they are identified, as reverse-IP enrichment would give; the others' events
        carry no account until the visitor is identified (the engine's identity resolution
        then attributes them). Chosen per cookie, without touching the random stream.
    first_index : int
        Number in the first account's id (``falcon-7.example``); the accounts are numbered
        from it. Cohorts of one run continue each other's numbering, so that no two of their
        accounts share an id (:func:`intent_stream.simulate_cli.cohort_configs`).
    crm_sync_minutes : float
        How often the CRM's sync delivers its events (:data:`CRM_EVENTS`: opportunities,
        deals, cancellations), as a CRM source or a reverse-ETL job does: each arrives at the
        first sync after it happened (syncs on the clock: every hour on the hour by
        default), keeping its own ``timestamp``, so the stream carries late events as a real
        one does. 0 delivers them when they happen.

    >>> SimulationConfig(accounts=5).start_ms
    1767225600000
    >>> SimulationConfig(days=0)
    Traceback (most recent call last):
    ...
    ValueError: days must be positive (and finite)
    >>> SimulationConfig(start=datetime(1999, 6, 1))
    Traceback (most recent call last):
    ...
    ValueError: start must be in 2000 or later (the engine rejects earlier events)
    """

    accounts: int = 200
    days: float = 90.0
    seed: int = 42
    start: datetime | None = None
    buyer_share: float = 0.25
    reveal_share: float = 1.0
    first_index: int = 0
    crm_sync_minutes: float = 60.0

    def __post_init__(self) -> None:
        if self.accounts < 0:
            raise ValueError("accounts must be zero or more")
        if not (self.days > 0 and math.isfinite(self.days)):
            raise ValueError("days must be positive (and finite)")
        if self.first_index < 0:
            raise ValueError("first_index must be zero or more")
        if not 0.0 <= self.buyer_share <= 1.0:
            raise ValueError("buyer_share must be between 0 and 1")
        if not 0.0 <= self.reveal_share <= 1.0:
            raise ValueError("reveal_share must be between 0 and 1")
        if not (self.crm_sync_minutes >= 0 and math.isfinite(self.crm_sync_minutes)):
            raise ValueError("crm_sync_minutes must be 0 or more (and finite)")
        if self.start is not None and self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))
        # The engine dead-letters event times outside the years 2000-2999.
        if self.start_ms < MIN_EVENT_TIME * 1000:
            raise ValueError("start must be in 2000 or later (the engine rejects earlier events)")
        if self.end_ms > MAX_EVENT_TIME * 1000:
            raise ValueError(
                "days must end the window before 3000 (the engine rejects later events)"
            )

    @property
    def start_ms(self) -> int:
        """Start of the window in epoch milliseconds."""
        start = self.start if self.start is not None else _DEFAULT_START
        return round(start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        """End of the window (exclusive) in epoch milliseconds."""
        return self.start_ms + round(self.days * _DAY)


@dataclass(frozen=True, kw_only=True)
class AccountTruth:
    """What really happened to one account inside the simulated window.

    ``converts`` is true when the account became a sales opportunity inside the window (an
    ``Opportunity Created`` event at ``opportunity_at``): the label an intent score should
    predict. ``won_at`` / ``lost_at`` are the deal's outcome if it closed inside the window.
    ``stages`` lists (time, stage) changes; the first entry is the stage at the window start.
    Times are ISO-8601 UTC strings as in the events.
    """

    account_id: str
    industry: str
    employees: int
    country: str
    converts: bool
    opportunity_at: str | None
    won_at: str | None
    lost_at: str | None
    churned_at: str | None
    stages: list[tuple[str, str]]
    kind: str = "passive"


# ----------------------------------------------------------------------------- vocabulary

_INDUSTRIES: tuple[tuple[str, float, float], ...] = (
    # name, weight, fit to the vendor's ICP
    ("software", 14, 0.95),
    ("financial services", 9, 0.85),
    ("fintech", 5, 0.9),
    ("insurance", 5, 0.8),
    ("healthcare", 9, 0.7),
    ("telecommunications", 4, 0.65),
    ("manufacturing", 10, 0.55),
    ("retail", 9, 0.5),
    ("logistics", 6, 0.5),
    ("energy", 4, 0.45),
    ("media", 5, 0.4),
    ("consulting", 6, 0.35),
    ("government", 4, 0.3),
    ("education", 5, 0.2),
    ("hospitality", 5, 0.2),
)
_COUNTRIES: tuple[tuple[str, float, tuple[int, ...], float], ...] = (
    # ISO code, weight, UTC offsets in minutes (one per account), fit
    ("US", 36, (-300, -360, -420, -480), 0.95),
    ("GB", 10, (0,), 0.9),
    ("DE", 9, (60,), 0.9),
    ("FR", 6, (60,), 0.75),
    ("CA", 5, (-300, -480), 0.9),
    ("NL", 4, (60,), 0.9),
    ("AU", 5, (600,), 0.8),
    ("IN", 6, (330,), 0.5),
    ("JP", 3, (540,), 0.6),
    ("BR", 4, (-180,), 0.5),
    ("SG", 3, (480,), 0.75),
    ("SE", 3, (60,), 0.85),
    ("ES", 3, (60,), 0.65),
)
_WORDS = (
    "northwind", "contoso", "fabrikam", "initech", "globex", "umbrella", "hooli", "vandelay",
    "stark", "wayne", "tyrell", "cyberdyne", "soylent", "massive", "acme", "oceanic",
    "pied", "dunder", "wonka", "gringotts", "aperture", "blackmesa", "monarch", "prestige",
    "sterling", "vertex", "summit", "harbor", "cobalt", "granite", "meridian", "lumen",
    "quartz", "beacon", "cascade", "orbit", "pinnacle", "redwood", "silverline", "tandem",
    "evergreen", "ironclad", "bluefin", "kestrel", "nimbus", "atlas", "horizon", "zephyr",
    "polaris", "juniper", "falcon", "sequoia", "keystone", "lighthouse", "mosaic", "catalyst",
)  # fmt: skip
_SUFFIXES = (
    "Systems", "Group", "Labs", "Holdings", "Industries", "Partners", "Technologies",
    "Health", "Logistics", "Financial", "Retail", "Networks", "Energy", "Media",
)  # fmt: skip
_FIRST = (
    "Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "James",
    "Kavya", "Liam", "Maria", "Noah", "Olivia", "Priya", "Quinn", "Rahul", "Sofia", "Tom",
    "Uma", "Victor", "Wei", "Ximena", "Yusuf", "Zoe", "Lars", "Amara", "Jonas", "Mei",
    "Carlos", "Fatima", "Erik", "Hannah", "Ivan", "Julia", "Kenji", "Lea", "Marco", "Nadia",
)  # fmt: skip
_LAST = (
    "Smith", "Garcia", "Muller", "Chen", "Patel", "Kim", "Rossi", "Silva", "Johansson",
    "Nguyen", "Brown", "Tanaka", "Novak", "Okafor", "Dubois", "Kowalski", "Haddad", "Berg",
    "Lopez", "Schmidt", "Singh", "Wilson", "Moreau", "Ito", "Costa", "Jensen", "Fischer",
    "Murphy", "Sato", "Ahmed", "Larsen", "Reyes", "Weber", "Khan", "Evans", "Park",
)  # fmt: skip
_FREEMAIL = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com")
_ROLES: tuple[tuple[str, float], ...] = (
    ("engineering", 20),
    ("it", 20),
    ("operations", 15),
    ("executive", 13),
    ("finance", 12),
    ("procurement", 10),
    ("marketing", 10),
)
_ROLE_NOUN = {
    "engineering": "Engineering",
    "it": "IT",
    "operations": "Operations",
    "executive": "Strategy",
    "finance": "Finance",
    "procurement": "Procurement",
    "marketing": "Marketing",
}
_C_LEVEL = {
    "engineering": "CTO",
    "it": "CIO",
    "operations": "COO",
    "executive": "CEO",
    "finance": "CFO",
    "procurement": "Chief Procurement Officer",
    "marketing": "CMO",
}
_INDIVIDUAL = {
    "engineering": "Software Engineer",
    "it": "Systems Administrator",
    "operations": "Operations Analyst",
    "executive": "Chief of Staff",
    "finance": "Financial Analyst",
    "procurement": "Buyer",
    "marketing": "Marketing Specialist",
}
_SENIORITY: dict[str, tuple[tuple[str, float], ...]] = {
    "executive": (("c_level", 5), ("vp", 4), ("director", 1)),
    "finance": (("c_level", 1), ("vp", 2), ("director", 3), ("manager", 3), ("individual", 2)),
    "procurement": (("director", 2), ("manager", 4), ("individual", 4)),
}
_SENIORITY_DEFAULT = (
    ("c_level", 0.5),
    ("vp", 1.5),
    ("director", 3),
    ("manager", 4),
    ("individual", 4),
)
# Who joins the buying committee at which stage rank (the champion joins at awareness).
_JOIN = {
    "engineering": (2, 3),
    "it": (2, 3),
    "operations": (2, 3),
    "marketing": (2, 3),
    "executive": (3, 4),
    "finance": (3, 4),
    "procurement": (4, 4),
}

_TOPICS = (
    "data security",
    "analytics",
    "integration",
    "compliance",
    "automation",
    "data governance",
    "cloud migration",
    "pricing",
)
_TOPIC_FEATURES = {
    "data security": ("access-control", "encryption", "audit-log"),
    "analytics": ("dashboards", "reports", "alerts"),
    "integration": ("connectors", "api", "webhooks"),
    "compliance": ("audit-log", "retention", "access-control"),
    "automation": ("workflows", "alerts", "webhooks"),
    "data governance": ("data-catalog", "lineage", "retention"),
    "cloud migration": ("connectors", "deployment", "sso"),
    "pricing": ("dashboards", "workflows", "sso"),
}
_TOPIC_DOCS = {
    "data security": ("security", "sso", "encryption"),
    "analytics": ("getting-started", "dashboards", "query-language"),
    "integration": ("api", "connectors", "webhooks"),
    "compliance": ("security", "gdpr", "soc2"),
    "automation": ("workflows", "api", "getting-started"),
    "data governance": ("data-catalog", "lineage", "permissions"),
    "cloud migration": ("deployment", "connectors", "getting-started"),
    "pricing": ("getting-started", "limits", "billing"),
}
_FEATURE_TITLES = {
    feature: f"{feature.replace('-', ' ').capitalize()} | Features"
    for features in _TOPIC_FEATURES.values()
    for feature in features
}
_BLOG_ANGLES = (
    "a practical guide",
    "five mistakes to avoid",
    "what changed this year",
    "how teams measure it",
    "a checklist",
    "lessons from the field",
)
_WHITEPAPER_KINDS = (("guide", "whitepaper"), ("ebook", "ebook"), ("report", "report"))
_COMPETITORS = ("quantia", "stackwise", "dataforge", "northbeam")
_PLANS = ("team", "business", "enterprise")
_FORMS = ("contact_sales", "newsletter", "event_signup")
_LOSS_REASONS = ("price", "competitor", "no decision", "timing", "missing feature")
_CHURN_REASONS = ("budget cuts", "switched to competitor", "low adoption", "acquired")

# Actions per day by kind and stage; the mix of actions by stage (or kind, for noise).
_RATE = {
    "buyer": {
        "out_of_market": 0.05,
        "awareness": 0.26,
        "consideration": 0.42,
        "evaluation": 0.75,
        "purchase": 0.45,
        "customer": 0.3,
        "at_risk": 0.2,
        "churned": 0.02,
    },
    "passive": {"out_of_market": 0.04, "awareness": 0.15, "consideration": 0.3},
    "customer": {"customer": 0.25, "at_risk": 0.18, "churned": 0.02},
    "researcher": {"out_of_market": 0.17},
    "competitor": {"out_of_market": 0.15},
    "drive_by": {"out_of_market": 0.012},
}
_MIX: dict[str, tuple[tuple[str, float], ...]] = {
    "out_of_market": (("email", 4), ("blog", 3), ("home", 1.5)),
    "awareness": (
        ("email", 3),
        ("blog", 5),
        ("home", 1),
        ("content", 1.5),
        ("product", 1),
        ("webinar", 0.3),
    ),
    "consideration": (
        ("email", 2),
        ("blog", 2),
        ("content", 4),
        ("product", 3),
        ("webinar", 1.5),
        ("docs", 1.5),
        ("pricing", 0.6),
        ("form", 0.4),
        ("compare", 0.3),
        ("case_study", 0.5),
    ),
    "evaluation": (
        ("pricing", 3.5),
        ("compare", 2.5),
        ("product", 2),
        ("docs", 2.5),
        ("case_study", 1.5),
        ("content", 0.5),
        ("email", 1),
        ("webinar", 0.5),
        ("demo", 0.3),
        ("trial", 0.3),
        ("feature", 1.5),
    ),
    "purchase": (
        ("pricing", 2),
        ("docs", 2),
        ("case_study", 1),
        ("content", 1.5),
        ("feature", 3),
        ("email", 1.5),
        ("compare", 0.7),
        ("form", 0.3),
    ),
    "customer": (("feature", 6), ("docs", 2), ("email", 2), ("blog", 1), ("content", 0.5)),
    "at_risk": (("feature", 2), ("compare", 2), ("pricing", 1), ("docs", 1), ("email", 1)),
    "churned": (("email", 1), ("blog", 1)),
    "researcher": (
        ("blog", 5),
        ("content", 4),
        ("webinar", 1),
        ("docs", 1),
        ("home", 1),
        ("product", 0.5),
    ),
    "competitor": (
        ("pricing", 3),
        ("compare", 2.5),
        ("product", 3),
        ("docs", 2),
        ("content", 1),
        ("webinar", 0.4),
        ("blog", 1),
    ),
    "drive_by": (("home", 3), ("blog", 3), ("product", 0.5), ("pricing", 0.3)),
}


def _cumulative(pairs: tuple[tuple[str, float], ...]) -> tuple[tuple[str, ...], list[float]]:
    cum: list[float] = []
    total = 0.0
    for _, weight in pairs:
        total += weight
        cum.append(total)
    return tuple(name for name, _ in pairs), cum


_MIX_CUM = {key: _cumulative(pairs) for key, pairs in _MIX.items()}
_ROLES_CUM = _cumulative(_ROLES)
_SENIORITY_CUM = {role: _cumulative(pairs) for role, pairs in _SENIORITY.items()}
_SENIORITY_DEFAULT_CUM = _cumulative(_SENIORITY_DEFAULT)
_SLUG = {name: name.replace(" ", "-") for name in (*_TOPICS, *(i[0] for i in _INDUSTRIES))}
#: Kinds whose behaviour does not follow a stage.
_NOISE = frozenset({"researcher", "competitor", "drive_by"})

# Which roles do which actions (default 1.0); the champion counts double.
_AFFINITY: dict[str, dict[str, float]] = {
    "docs": {
        "engineering": 3,
        "it": 3,
        "finance": 0.2,
        "procurement": 0.2,
        "executive": 0.3,
        "marketing": 0.5,
    },
    "product": {"engineering": 1.5, "it": 1.5, "operations": 1.5},
    "pricing": {"finance": 3, "procurement": 3, "executive": 2},
    "compare": {"executive": 1.5, "it": 1.5, "engineering": 1.2},
    "case_study": {"executive": 2, "operations": 1.5, "marketing": 1.5},
    "feature": {
        "engineering": 2,
        "operations": 2,
        "it": 1.5,
        "marketing": 1.5,
        "finance": 0.5,
        "procurement": 0.2,
    },
    "trial": {"engineering": 2, "it": 2, "finance": 0.2, "procurement": 0.1},
    "content": {"procurement": 0.5},
}

_NO_AFFINITY: dict[str, float] = {}

# Business hours in local time: weight per hour of the week (Monday 00:00 first), max 1.
_HOURLY = [0.03] * 7 + [0.3] + [1.0] * 11 + [0.3] * 4 + [0.05]
_PROFILE = tuple(w * (1.0 if day < 5 else 0.15) for day in range(7) for w in _HOURLY)
_PROFILE_MEAN = sum(_PROFILE) / len(_PROFILE)
# 1970-01-01 was a Thursday: add three days of hours so that hour 0 of the week is Monday.
_EPOCH_HOUR_SHIFT = 72
_MAX_EMPLOYEES = 250_000
_INDUSTRY_CUM = _cumulative(tuple((name, w) for name, w, _ in _INDUSTRIES))[1]
_COUNTRY_CUM = _cumulative(tuple((code, w) for code, w, _, _ in _COUNTRIES))[1]


def _weighted(rng: random.Random, table: tuple[tuple[str, ...], list[float]]) -> str:
    """A name drawn from a :func:`_cumulative` table."""
    names, cum = table
    return names[bisect_right(cum, rng.random() * cum[-1])]


def _choice(rng: random.Random, options: Sequence[_T]) -> _T:
    # random.choice without its two Python-level frames (plans and people are hot too).
    return options[int(rng.random() * len(options))]


#: The shortest time from an opportunity to its close (won or lost), in days.
_MIN_SALES_CYCLE_DAYS = 14


def sales_cycle_days(employees: int) -> float:
    """Mean days from an opportunity to its close: longer the larger the buyer, as B2B
    deals are (about seven weeks for a company of 100, ten for one of 10,000).

    >>> round(sales_cycle_days(100)), round(sales_cycle_days(10_000))
    (45, 65)
    """
    return 25.0 + 10.0 * math.log10(employees + 1)


def win_probability(propensity: float) -> float:
    """Chance that an opportunity is won: a quarter to a third for the accounts that get
    that far (their propensity is mostly 0.6-0.95), as B2B win rates are.

    >>> round(win_probability(0.8), 2)
    0.29
    """
    return 0.05 + 0.3 * propensity


def churn_within(employees: int, days: float) -> float:
    """Chance that a customer cancels within ``days``: annual logo churn of 25% for small
    companies (under 200 people), 12% for mid-sized ones and 6% for enterprises (5,000 or
    more), compounded over the window.

    >>> round(churn_within(50, 365), 2), round(churn_within(1000, 120), 3)
    (0.25, 0.041)
    """
    annual = 0.25 if employees < 200 else 0.12 if employees < 5000 else 0.06
    return 1.0 - float((1.0 - annual) ** (days / 365.0))


def _randint(rng: random.Random, low: int, high: int) -> int:
    return low + int(rng.random() * (high - low + 1))


def _gamma_ms(rng: random.Random, mean_days: float, shape: float = 2.0) -> int:
    return int(rng.gammavariate(shape, mean_days / shape) * _DAY) + 1


# ----------------------------------------------------------------------------- plans


@dataclass(slots=True)
class _Plan:
    """An account's static facts and hidden timeline (from its own Random)."""

    idx: int
    account_id: str
    name: str
    industry: str
    employees: int
    country: str
    tz_ms: int
    kind: str
    fit: float
    propensity: float
    topics: tuple[str, ...]
    roles: list[tuple[str, str]]  # (role, seniority) per committee slot; slot 0 = champion
    join: list[int]  # stage rank at which each slot becomes active
    stage_times: list[int]
    stage_names: list[str]
    customer_plan: str
    demo_at: int | None = None
    trial_at: int | None = None
    opportunity_at: int | None = None
    won_at: int | None = None
    lost_at: int | None = None
    churned_at: int | None = None
    first_tick: int | None = None
    rates: list[float] = field(default_factory=list)
    amount: int = 0
    scheduled: list[tuple[int, str]] = field(default_factory=list)


# Planned moments of a journey and the action each one schedules.
_PLANNED = (
    ("demo_at", "demo"),
    ("trial_at", "trial"),
    ("opportunity_at", "opportunity"),
    ("won_at", "won"),
    ("lost_at", "lost"),
    ("churned_at", "churn"),
)

# What the accounts that are not buying are (weights).
_OTHER_KINDS = (
    ("passive", 60.0),
    ("customer", 8.0),
    ("researcher", 10.0),
    ("competitor", 4.0),
    ("drive_by", 18.0),
)
_OTHER_KINDS_CUM = _cumulative(_OTHER_KINDS)

# E[fit ** 2] over the firmographic distribution (measured), so P(buyer) averages buyer_share.
_FIT_SQ_MEAN = 0.426


def _fit(industry_fit: float, employees: int, country_fit: float) -> float:
    if employees < 20:
        size = 0.15
    elif employees < 200:
        size = 0.55
    elif employees < 5000:
        size = 1.0
    elif employees < 50000:
        size = 0.8
    else:
        size = 0.6
    return 0.5 * industry_fit + 0.35 * size + 0.15 * country_fit


def _make_plan(config: SimulationConfig, idx: int, start: int, end: int) -> _Plan:
    """Account ``idx``'s plan, from a Random of its own: the same whatever else is simulated."""
    r = random.Random(f"intent_stream.simulate/{config.seed}/{idx}")
    word = _WORDS[int(r.random() * len(_WORDS))]
    suffix = _SUFFIXES[int(r.random() * len(_SUFFIXES))]
    ind_name, _, ind_fit = r.choices(_INDUSTRIES, cum_weights=_INDUSTRY_CUM)[0]
    country, _, offsets, c_fit = r.choices(_COUNTRIES, cum_weights=_COUNTRY_CUM)[0]
    tz_ms = offsets[int(r.random() * len(offsets))] * _MINUTE
    employees = max(1, min(_MAX_EMPLOYEES, round(math.exp(r.gauss(4.3, 1.7)))))
    fit = _fit(ind_fit, employees, c_fit)
    propensity = min(0.98, max(0.02, fit + r.gauss(0.0, 0.15)))
    if r.random() < min(1.0, config.buyer_share * fit * fit / _FIT_SQ_MEAN):
        kind = "buyer"
    else:
        kind = _weighted(r, _OTHER_KINDS_CUM)
    if kind == "researcher":
        ind_name, employees = _choice(r, ("education", "consulting")), _randint(r, 3, 40000)
    elif kind == "competitor":
        ind_name, employees = "software", _randint(r, 50, 3000)
    if kind in ("buyer", "passive", "customer"):
        size = round(1.2 * math.log10(employees + 1) + r.gauss(0.5, 1.0))
        size = max(2, min(8, size))
    elif kind == "drive_by":
        size = 1
    else:
        size = _randint(r, 1, 3)
    roles: list[tuple[str, str]] = []
    join: list[int] = []
    for slot in range(size):
        if slot == 0:
            role = _choice(r, ("engineering", "it", "operations", "marketing", "it"))
            seniority = _choice(r, ("manager", "director", "director", "individual", "vp"))
            rank = 0
        else:
            role = _weighted(r, _ROLES_CUM)
            seniority = _weighted(r, _SENIORITY_CUM.get(role, _SENIORITY_DEFAULT_CUM))
            rank = _choice(r, _JOIN[role])
        roles.append((role, seniority))
        join.append(rank)
    n_topics = _randint(r, 1, 3)
    topics = tuple(r.sample(_TOPICS, n_topics))
    plan = _Plan(
        idx=idx,
        account_id=f"{word}-{config.first_index + idx}.example",
        name=f"{word.title()} {suffix}",
        industry=ind_name,
        employees=employees,
        country=country,
        tz_ms=tz_ms,
        kind=kind,
        fit=fit,
        propensity=propensity,
        topics=topics,
        roles=roles,
        join=join,
        stage_times=[],
        stage_names=[],
        customer_plan=_PLANS[min(2, int(math.log10(employees + 1) / 1.5))],
    )
    span = end - start
    # The first entry is the state before any journey, earlier than any journey can start.
    timeline: list[tuple[int, str]] = [(start - 3650 * _DAY, "out_of_market")]
    if kind == "buyer":
        _buyer_timeline(r, plan, timeline, start, span)
    elif kind == "passive" and r.random() < 0.45:
        t = start + int(r.uniform(-0.1, 0.9) * span)
        timeline.append((t, "awareness"))
        if r.random() < 0.3:
            # A tyre-kicker: a short look at the category that goes nowhere.
            t += _gamma_ms(r, 6)
            timeline.append((t, "consideration"))
            t += _gamma_ms(r, 8)
            timeline.append((t, "awareness"))
            t += _gamma_ms(r, 8)
        else:
            t += _gamma_ms(r, 15)
        timeline.append((t, "out_of_market"))
    elif kind == "customer":
        timeline = [(start - 3650 * _DAY, "customer")]
        plan.amount = int(round(r.lognormvariate(math.log(25000 + employees * 15), 0.5), -2))
        if r.random() < churn_within(employees, span / _DAY):
            churn = start + int(r.uniform(0.15, 1.0) * span)
            timeline.append((max(start, churn - _gamma_ms(r, 20)), "at_risk"))
            timeline.append((churn, "churned"))
            plan.churned_at = churn
    # Collapse everything before the window into the stage at its start.
    timeline.sort(key=lambda change: change[0])
    at_start = "out_of_market"
    for t, stage in timeline:
        if t <= start:
            at_start = stage
    times, names = [start], [at_start]
    for t, stage in timeline:
        if start < t < end and stage != names[-1]:
            times.append(t)
            names.append(stage)
    plan.stage_times, plan.stage_names = times, names
    for attr, action in _PLANNED:
        value = getattr(plan, attr)
        if value is None:
            continue
        if start <= value < end:
            plan.scheduled.append((value, action))
        else:
            setattr(plan, attr, None)  # outside the window: not observable, not in the truth
    plan.scheduled.sort()
    plan.rates = _segment_rates(plan)
    plan.first_tick = _next_tick(plan, r, start, end)
    return plan


def _buyer_timeline(
    r: random.Random, plan: _Plan, timeline: list[tuple[int, str]], start: int, span: int
) -> None:
    """Append a buying journey (with stalls and drop-outs) and set the plan's outcomes."""
    t = start + int(r.uniform(-0.25, 0.7) * span)
    timeline.append((t, "awareness"))
    lift = 0.55 + 0.7 * plan.propensity
    eval_start: int | None = None
    previous = {"consideration": "awareness", "evaluation": "consideration"}
    steps = (
        ("awareness", "consideration", 0.85, 10.0),
        ("consideration", "evaluation", 0.75, 14.0),
        ("evaluation", "purchase", 0.8, 12.0),
    )
    reached_opportunity = False
    for current, following, base, dwell in steps:
        t += _gamma_ms(r, dwell)
        p = min(0.97, base * lift)
        if r.random() >= p:
            if current in previous and r.random() < 0.5:
                # Stall: fall back a stage for a while, then one more try.
                timeline.append((t, previous[current]))
                t += _gamma_ms(r, 10)
                timeline.append((t, current))
                t += _gamma_ms(r, dwell * 0.6)
                failed = r.random() >= p
            else:
                failed = True
            if failed:
                if current == "evaluation" and eval_start is not None and r.random() < 0.35:
                    plan.demo_at = eval_start + int(r.random() * (t - eval_start))
                timeline.append((t, "out_of_market"))
                break
        if following == "evaluation":
            timeline.append((t, "evaluation"))
            eval_start = t
            continue
        if following == "purchase":
            assert eval_start is not None
            # Sales qualifies the demo into an opportunity a few days later.
            eval_end = t
            t += int(r.uniform(2, 10) * _DAY)
            plan.demo_at = eval_start + int(r.uniform(0.2, 0.9) * (eval_end - eval_start))
            if r.random() < 0.4:
                plan.trial_at = eval_start + int(r.uniform(0.1, 0.95) * (t - eval_start))
            plan.opportunity_at = t
            timeline.append((t, "purchase"))
            reached_opportunity = True
            break
        timeline.append((t, following))
    if reached_opportunity:
        assert plan.opportunity_at is not None
        t = plan.opportunity_at + max(
            _MIN_SALES_CYCLE_DAYS * _DAY, _gamma_ms(r, sales_cycle_days(plan.employees), 3.0)
        )
        plan.amount = int(round(r.lognormvariate(math.log(25000 + plan.employees * 15), 0.5), -2))
        if r.random() < win_probability(plan.propensity):
            plan.won_at = t
            timeline.append((t, "customer"))
            if r.random() < 0.08:
                churn = t + int(r.uniform(30, 200) * _DAY)
                timeline.append((max(t + 7 * _DAY, churn - _gamma_ms(r, 20)), "at_risk"))
                timeline.append((churn, "churned"))
                plan.churned_at = churn
        else:
            plan.lost_at = t
            timeline.append((t, "out_of_market"))
        # The window opens before the opportunity: otherwise it would not be observable.
        floor = start + _DAY + int(r.random() * 3 * _DAY)
        if plan.opportunity_at < floor:
            shift = floor - plan.opportunity_at
            timeline[1:] = [(when + shift, stage) for when, stage in timeline[1:]]
            for attr in ("demo_at", "trial_at", "opportunity_at", "won_at", "lost_at"):
                value = getattr(plan, attr)
                if value is not None:
                    setattr(plan, attr, value + shift)
            if plan.churned_at is not None:
                plan.churned_at += shift


def _segment_rates(plan: _Plan) -> list[float]:
    """Candidate rate (per ms, before business-hours thinning) for each stage segment."""
    rates = _RATE[plan.kind]
    lift = 0.7 + 0.6 * plan.propensity if plan.kind == "buyer" else 1.0
    crowd = 0.6 + 0.1 * len(plan.roles)  # bigger committees make more noise late on
    out = []
    for stage in plan.stage_names:
        rate = rates.get(stage, 0.0) * lift
        if stage in ("evaluation", "purchase"):
            rate *= crowd
        out.append(rate / _PROFILE_MEAN / _DAY)
    return out


def _next_tick(plan: _Plan, rng: random.Random, t: int, end: int) -> int | None:
    """The next unscheduled action after ``t``, or None if none before ``end``.

    A Poisson process at the stage's rate, thinned by the business-hours profile of the
    account's local time; memorylessness lets a candidate restart at each stage change.
    """
    times, rates = plan.stage_times, plan.rates
    n = len(times)
    k = bisect_right(times, t) - 1
    rand = rng.random
    shift = plan.tz_ms + _EPOCH_HOUR_SHIFT * _HOUR
    while True:
        limit = times[k + 1] if k + 1 < n else end
        rate = rates[k]
        if rate > 0.0:
            while True:
                t += int(-math.log(1.0 - rand()) / rate) + 1
                if t >= limit:
                    break
                if rand() < _PROFILE[(t + shift) // _HOUR % 168]:
                    return t
        if k + 1 >= n:
            return None
        t = limit
        k += 1


# ----------------------------------------------------------------------------- people


class _Person:
    __slots__ = (
        "busy_until",
        "cookies",
        "email",
        "identified",
        "known",
        "logged_in",
        "name",
        "role",
        "seniority",
        "title",
        "user_id",
    )

    def __init__(
        self, rng: random.Random, plan: _Plan, slot: int, *, known: bool, freemail: bool
    ) -> None:
        self.role, self.seniority = plan.roles[slot]
        first, last = _choice(rng, _FIRST), _choice(rng, _LAST)
        self.name = f"{first} {last}"
        if freemail:
            self.email = (
                f"{first.lower()}{last.lower()}{_randint(rng, 1, 99)}@{_choice(rng, _FREEMAIL)}"
            )
        else:
            self.email = f"{first.lower()}.{last.lower()}@{plan.account_id}"
        if plan.kind == "researcher":
            self.title = _choice(rng, ("Student", "Graduate Researcher", "Industry Analyst"))
        elif self.seniority == "c_level":
            self.title = _C_LEVEL[self.role]
        elif self.seniority == "vp":
            self.title = f"VP of {_ROLE_NOUN[self.role]}"
        elif self.seniority == "director":
            self.title = f"Director of {_ROLE_NOUN[self.role]}"
        elif self.seniority == "manager":
            self.title = f"{_ROLE_NOUN[self.role]} Manager"
        else:
            self.title = _INDIVIDUAL[self.role]
        self.user_id = f"usr_{rng.getrandbits(56):014x}"
        n_cookies = 2 if rng.random() < 0.3 else 1
        self.cookies = tuple(_uuid(rng) for _ in range(n_cookies))
        self.known = known  # on the marketing list / in the CRM: email events carry userId
        self.identified = 0  # bit i set: cookie i has been tied to userId by an identify call
        self.logged_in = False  # a customer's user: sent an identify at a first login
        self.busy_until = 0


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


class _Account:
    __slots__ = (
        "demo_done",
        "group_sent",
        "opp_id",
        "people",
        "plan",
        "plan_name",
        "product",
    )

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.people: list[_Person | None] = [None] * len(plan.roles)
        self.group_sent = False
        self.product = plan.kind == "customer"  # people can use the product (trial or paid)
        self.demo_done = False
        self.opp_id = ""
        self.plan_name = plan.customer_plan if plan.kind == "customer" else "prospect"


# ----------------------------------------------------------------------------- the engine


class _Visit:
    """One browsing session: who, on which cookie, the clock, and where they came from."""

    __slots__ = ("account", "campaign", "cookie", "person", "referrer", "t")

    def __init__(
        self,
        account: _Account,
        person: _Person,
        cookie: int,
        t: int,
        referrer: str,
        campaign: dict[str, str] | None,
    ) -> None:
        self.account = account
        self.person = person
        self.cookie = cookie
        self.t = t
        self.referrer = referrer
        self.campaign = campaign


class _Simulator:
    """The discrete-event loop; see the module docstring."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self._reveal_below = config.reveal_share * 2**32
        self.end = config.end_ms
        self._random = self.rng.random
        self._seq = itertools.count()
        # Pending actions (time, seq, account index, action, payload) and generated events.
        self.wake: list[tuple[int, int, int, str, Any]] = []
        self.out: list[tuple[int, int, dict[str, Any]]] = []
        self.accounts: dict[int, _Account] = {}
        self._sessions: dict[str, Callable[[_Visit], None]] = {
            "home": self._do_home,
            "blog": self._do_blog,
            "content": self._do_content,
            "case_study": self._do_case_study,
            "product": self._do_product,
            "docs": self._do_docs,
            "pricing": self._do_pricing,
            "compare": self._do_compare,
            "form": self._do_form,
            "webinar": self._do_webinar,
            "demo": self._do_demo,
            "trial": self._do_trial,
        }
        start = config.start_ms
        for idx in range(config.accounts):
            plan = _make_plan(config, idx, start, self.end)
            first = [t for t, _ in plan.scheduled[:1]]
            if plan.first_tick is not None:
                first.append(plan.first_tick)
            if first:
                self._schedule(min(first), idx, "init", plan)

    def _schedule(self, t: int, idx: int, action: str, payload: Any) -> None:
        if t < self.end:
            heapq.heappush(self.wake, (t, next(self._seq), idx, action, payload))

    def _emit(self, t: int, event: dict[str, Any]) -> None:
        if t < self.end:
            heapq.heappush(self.out, (t, next(self._seq), event))

    def run(self) -> Iterator[tuple[int, dict[str, Any]]]:
        wake, out = self.wake, self.out
        heappop = heapq.heappop
        accounts = self.accounts
        while wake:
            t, _, idx, action, payload = heappop(wake)
            # Every action at or after t only produces events at or after t.
            while out and out[0][0] <= t:
                ts, _, event = heappop(out)
                yield ts, event
            if action == "tick":
                self._tick(accounts[idx], t)
            elif action == "init":
                self._init(payload, t)
            else:
                self._act(accounts[idx], t, action, payload)
        while out:
            ts, _, event = heappop(out)
            yield ts, event

    def _init(self, plan: _Plan, t: int) -> None:
        account = _Account(plan)
        self.accounts[plan.idx] = account
        if plan.kind == "customer":
            for slot in range(len(plan.roles)):
                person = self._person(account, slot)
                person.identified = (1 << len(person.cookies)) - 1
        for when, action in plan.scheduled:
            if when >= t:
                self._schedule(when, plan.idx, action, None)
        if plan.first_tick is not None:
            self._schedule(plan.first_tick, plan.idx, "tick", None)

    def _tick(self, account: _Account, t: int) -> None:
        """An unscheduled action, drawn from the mix of the account's kind or stage."""
        plan = account.plan
        stage = plan.stage_names[bisect_right(plan.stage_times, t) - 1]
        names, cum = _MIX_CUM[plan.kind if plan.kind in _NOISE else stage]
        action = names[bisect_right(cum, self.rng.random() * cum[-1])]
        self._activity(account, t, action, _RANK[stage])
        nxt = _next_tick(plan, self.rng, t, self.end)
        if nxt is not None:
            self._schedule(nxt, plan.idx, "tick", None)

    def _act(self, account: _Account, t: int, action: str, payload: Any) -> None:
        """A scheduled action: webinar attendance, the planned demo or trial, CRM outcomes."""
        if action == "attend":
            person, props = payload
            props = {**props, "duration_minutes": self._int(8, 60)}
            self._track(t, account, person, None, "Webinar Attended", props)
        elif action in ("demo", "trial"):
            self._activity(account, t, action, _RANK["evaluation"], planned=True)
        else:
            self._crm(account, t, action)

    # -- people ---------------------------------------------------------------------------

    def _person(self, account: _Account, slot: int) -> _Person:
        person = account.people[slot]
        if person is None:
            plan = account.plan
            rng = self.rng
            if plan.kind == "researcher":
                freemail, known = True, False
            elif plan.kind in ("competitor", "drive_by"):
                freemail, known = False, False
            else:
                freemail = rng.random() < 0.08
                known = plan.kind == "customer" or rng.random() < 0.3
            person = _Person(rng, plan, slot, known=known, freemail=freemail)
            account.people[slot] = person
        return person

    def _pick_person(
        self, account: _Account, action: str, rank: int, *, known_only: bool = False
    ) -> _Person | None:
        """Someone on the committee active at this stage rank, weighted by role affinity."""
        plan = account.plan
        affinity = _AFFINITY.get(action, _NO_AFFINITY)
        roles = plan.roles
        people = account.people
        slots: list[int] = []
        cum: list[float] = []
        total = 0.0
        for slot, joins in enumerate(plan.join):
            if joins > rank:
                continue
            # People not met yet may be on the marketing list; people met and not known are not.
            if known_only and (met := people[slot]) is not None and not met.known:
                continue
            total += affinity.get(roles[slot][0], 1.0) * (1.0 if slot else 2.0)
            slots.append(slot)
            cum.append(total)
        if not slots:
            return None
        pick = 0 if len(slots) == 1 else bisect_right(cum, self._random() * total)
        person = self._person(account, slots[pick])
        return None if known_only and not person.known else person

    # -- event builders -------------------------------------------------------------------

    def _base(
        self, kind: str, account: _Account, person: _Person, cookie: int | None
    ) -> dict[str, Any]:
        """An event's common fields; server-side sources (cookie None) know the userId."""
        context: dict[str, Any] = {"groupId": account.plan.account_id}
        if cookie is None:
            event: dict[str, Any] = {
                "type": kind,
                "messageId": "",
                "timestamp": "",
                "userId": person.user_id,
                "context": context,
            }
            context["traits"] = {"email": person.email}
        elif person.identified >> cookie & 1:
            event = {
                "type": kind,
                "messageId": "",
                "timestamp": "",
                "anonymousId": person.cookies[cookie],
                "userId": person.user_id,
                "context": context,
            }
            context["traits"] = {"email": person.email}
        else:
            anonymous_id = person.cookies[cookie]
            if zlib.crc32(anonymous_id.encode()) >= self._reveal_below:
                del context["groupId"]
            event = {
                "type": kind,
                "messageId": "",
                "timestamp": "",
                "anonymousId": anonymous_id,
                "context": context,
            }
        return event

    def _track(
        self,
        t: int,
        account: _Account,
        person: _Person,
        cookie: int | None,
        name: str,
        properties: dict[str, Any],
        *,
        campaign: dict[str, str] | None = None,
    ) -> None:
        event = self._base("track", account, person, cookie)
        event["event"] = name
        event["properties"] = properties
        if campaign is not None:
            event["context"]["campaign"] = dict(campaign)
        self._emit(t, event)

    def _group(self, t: int, account: _Account, person: _Person, cookie: int | None) -> None:
        plan = account.plan
        event = self._base("group", account, person, cookie)
        event["groupId"] = plan.account_id
        event["traits"] = {
            "name": plan.name,
            "industry": plan.industry,
            "employees": plan.employees,
            "country": plan.country,
            "plan": account.plan_name,
            "website": f"https://www.{plan.account_id}",
        }
        self._emit(t, event)

    def _page(self, v: _Visit, path: str, title: str, topic: str | None = None) -> None:
        """A page view, then the time spent reading it."""
        url = _SITE + path
        if url == v.referrer:
            return  # a link to the page being read: nothing new
        event = self._base("page", v.account, v.person, v.cookie)
        page = {"path": path, "url": url, "title": title, "referrer": v.referrer}
        props: dict[str, Any] = dict(page)
        if topic is not None:
            props["topic"] = topic
        event["name"] = title
        event["properties"] = props
        context = event["context"]
        context["page"] = page
        if v.campaign is not None:
            # The landing page's UTM parameters, kept for the whole visit (see _web_track).
            context["campaign"] = dict(v.campaign)
        self._emit(v.t, event)
        v.referrer = url
        v.t += int(self.rng.expovariate(1 / 70.0) * _SECOND) + 5 * _SECOND

    def _web_track(self, v: _Visit, name: str, properties: dict[str, Any]) -> None:
        self._track(v.t, v.account, v.person, v.cookie, name, properties, campaign=v.campaign)
        v.t += self._gap(10, 90)

    def _identify(self, v: _Visit) -> None:
        """Tie the visit's cookie to the person, as a form fill or a tracked link does."""
        person = v.person
        if person.identified >> v.cookie & 1:
            return
        person.identified |= 1 << v.cookie
        person.known = True
        self._send_identify(v)

    def _login(self, v: _Visit) -> None:
        """A customer's user opens a first visit of the window: the app's login sends an
        identify with the user's traits (and the company's group call, once); their cookies
        carried the userId already, as they were identified before the window."""
        if v.person.logged_in or v.account.plan.kind != "customer":
            return
        v.person.logged_in = True
        self._send_identify(v)

    def _send_identify(self, v: _Visit) -> None:
        person, account = v.person, v.account
        plan = account.plan
        event = self._base("identify", account, person, v.cookie)
        event["traits"] = {
            "email": person.email,
            "name": person.name,
            "title": person.title,
            "role": person.role,
            "seniority": person.seniority,
            "company": {
                "name": plan.name,
                "industry": plan.industry,
                "employee_count": plan.employees,
            },
        }
        self._emit(v.t, event)
        v.t += self._gap(0.5, 2)
        if not account.group_sent:
            account.group_sent = True
            self._group(v.t, account, person, v.cookie)
            v.t += self._gap(0.2, 1)

    def _form(self, v: _Visit, name: str, properties: dict[str, Any]) -> None:
        self._identify(v)
        self._web_track(v, name, properties)

    def _gap(self, low_s: float, high_s: float) -> int:
        """A pause of ``low_s`` to ``high_s`` seconds, in ms (at least 1)."""
        return int((low_s + (high_s - low_s) * self._random()) * _SECOND) + 1

    def _pick(self, options: Sequence[_T]) -> _T:
        return options[int(self._random() * len(options))]

    def _int(self, low: int, high: int) -> int:
        """A uniform integer in [low, high]."""
        return low + int(self._random() * (high - low + 1))

    # -- content --------------------------------------------------------------------------

    def _topic(self, account: _Account) -> str:
        rng = self.rng
        if rng.random() < 0.75:
            return self._pick(account.plan.topics)
        return self._pick(_TOPICS)

    def _blog(self, topic: str) -> tuple[str, str]:
        k = int(self._random() * len(_BLOG_ANGLES))
        return f"/blog/{_SLUG[topic]}-{k + 1}", f"{topic.capitalize()}: {_BLOG_ANGLES[k]}"

    def _feature_page(self, v: _Visit, topic: str) -> None:
        feature = self._pick(_TOPIC_FEATURES[topic])
        self._page(v, f"/features/{feature}", _FEATURE_TITLES[feature], topic)

    def _entry(self, account: _Account, *, compare: bool) -> tuple[str, dict[str, str] | None]:
        """Where a session comes from: (referrer, campaign or None)."""
        # One draw whatever the outcome, so adding a channel does not shift the stream.
        x = self.rng.random()
        if compare and x < 0.3:
            return "https://www.g2.com/compare", None
        if x < 0.42:
            return "https://www.google.com/", None
        if x < 0.67:
            return "", None
        if x < 0.77:
            campaign = f"{_SLUG[account.plan.topics[0]]}-awareness"
            return "https://www.linkedin.com/", {
                "name": campaign,
                "source": "linkedin",
                "medium": "paid_social",
            }
        if x < 0.8:
            return "https://ads.network.example/", {
                "name": "retargeting",
                "source": "programmatic",
                "medium": "display",
                "content": "banner-300x250",
            }
        if x < 0.9:
            return "https://www.google.com/", {
                "name": "brand-search",
                "source": "google",
                "medium": "cpc",
                "term": "vendor pricing",
            }
        if x < 0.94:
            return "https://news.ycombinator.com/", None
        if x < 0.97:
            return "https://www.linkedin.com/feed/", None
        return "https://marketplace.partner.example/listing", {
            "name": "cloud-marketplace",
            "source": "cloud-marketplace",
            "medium": "partner",
        }

    # -- actions --------------------------------------------------------------------------

    def _activity(
        self, account: _Account, t: int, action: str, rank: int, *, planned: bool = False
    ) -> None:
        rng = self.rng
        if action == "email":
            person = self._pick_person(account, action, rank, known_only=True)
            if person is not None:
                self._email(account, person, t, rank)
                return
            action = "blog"
        if action == "feature" and not account.product:
            action = "product"
        elif action == "trial" and account.product:
            action = "feature"
        elif action == "demo" and account.demo_done and not planned:
            action = "pricing"
        if action == "feature":
            person = self._pick_person(account, action, rank, known_only=True)
            if person is not None:
                self._feature(account, person, t)
            return
        if planned and action == "demo":
            # The champion usually asks for the demo; otherwise the latest to join.
            slot = 0 if rng.random() < 0.7 else len(account.people) - 1
            person = self._person(account, slot)
        else:
            person = self._pick_person(account, action, rank)
            if person is None:
                return
        # One browsing session at a time per person, so a cookie's events stay in order.
        t = max(t, person.busy_until + self._gap(60, 600))
        cookie = 0 if len(person.cookies) == 1 or rng.random() < 0.8 else 1
        referrer, campaign = self._entry(account, compare=action == "compare")
        visit = _Visit(account, person, cookie, t, referrer, campaign)
        self._login(visit)
        self._sessions[action](visit)
        if self._random() < 0.45:
            self._wander(visit, rank)
        person.busy_until = visit.t

    def _email(self, account: _Account, person: _Person, t: int, rank: int) -> None:
        rng = self.rng
        topic = self._topic(account)
        slug = _SLUG[topic]
        email_id = f"{slug}-nurture-{self._int(1, 6)}"
        campaign = f"{slug}-nurture"
        props = {
            "campaign_name": campaign,
            "email_id": email_id,
            "email_subject": f"{topic.capitalize()}: {self._pick(_BLOG_ANGLES)}",
            "topic": topic,
            "content_type": "email",
        }
        self._track(t, account, person, None, "Email Opened", dict(props))
        if rng.random() >= (0.12 if rank <= 1 else 0.3):
            return
        t += int(rng.uniform(5, 300) * _SECOND)
        if rng.random() < 0.5:
            path, title = self._blog(topic)
        else:
            path, title = f"/resources/{slug}-guide", f"The {topic} guide"
        self._track(t, account, person, None, "Email Clicked", {**props, "link_url": _SITE + path})
        utm = {"name": campaign, "source": "newsletter", "medium": "email", "content": email_id}
        visit = _Visit(account, person, 0, max(t + self._gap(1, 4), person.busy_until + 1), "", utm)
        self._login(visit)
        self._page(visit, path, title, topic)
        if rng.random() < 0.5:
            # The tracked link carries the recipient: the cookie becomes known.
            self._identify(visit)
        person.busy_until = visit.t

    def _feature(self, account: _Account, person: _Person, t: int) -> None:
        """Product telemetry (server side) for a trial or a customer."""
        rng = self.rng
        topic = self._topic(account)
        features = _TOPIC_FEATURES[topic]
        for _ in range(self._int(2, 5)):
            props = {"feature": self._pick(features), "topic": topic}
            self._track(t, account, person, None, "Feature Used", props)
            t += int(rng.uniform(30, 900) * _SECOND)

    def _wander(self, v: _Visit, rank: int) -> None:
        """A few more pages after what the visitor came for; later stages look at pricing."""
        for _ in range(self._int(1, 2)):
            x = self._random() * (1.0 + 0.15 * rank)
            if x < 0.35:
                topic = self._topic(v.account)
                self._page(v, *self._blog(topic), topic)
            elif x < 0.5:
                self._page(v, "/", "Home")
            elif x < 0.7:
                self._page(v, "/product", "Product")
            elif x < 0.85:
                self._feature_page(v, self._topic(v.account))
            elif x < 1.0:
                self._page(v, "/integrations", "Integrations")
            elif x < 1.25:
                self._page(v, "/pricing", "Pricing", "pricing")
            else:
                rival = self._pick(_COMPETITORS)
                self._page(v, f"/compare/{rival}", f"Us vs {rival}")

    def _do_home(self, v: _Visit) -> None:
        self._page(v, "/", "Home")
        if self.rng.random() < 0.35:
            self._page(v, "/product", "Product")

    def _do_blog(self, v: _Visit) -> None:
        rng = self.rng
        topic = self._topic(v.account)
        self._page(v, *self._blog(topic), topic)
        for _ in range(self._pick((0, 0, 1, 1, 2))):
            if rng.random() < 0.6:
                topic = self._topic(v.account)
                self._page(v, *self._blog(topic), topic)
            else:
                self._page(v, "/", "Home")

    def _download(self, v: _Visit, *, case_study: bool) -> None:
        rng = self.rng
        plan = v.account.plan
        topic = self._topic(v.account)
        slug = _SLUG[topic]
        if case_study:
            path = f"/resources/case-studies/{slug}-{_SLUG[plan.industry]}"
            title = f"Case study: {topic} in {plan.industry}"
            event, content_type = "Case Study Downloaded", "case_study"
        else:
            noun, content_type = self._pick(_WHITEPAPER_KINDS)
            path, title = f"/resources/{slug}-{noun}", f"The {topic} {noun}"
            event = "Whitepaper Downloaded"
        self._page(v, path, title, topic)
        if rng.random() < 0.55 or plan.kind == "researcher":
            # Gated content: the form fill identifies the visitor.
            self._form(v, event, {"title": title, "topic": topic, "content_type": content_type})

    def _do_content(self, v: _Visit) -> None:
        self._download(v, case_study=False)

    def _do_case_study(self, v: _Visit) -> None:
        self._download(v, case_study=True)

    def _do_product(self, v: _Visit) -> None:
        rng = self.rng
        topic = self._topic(v.account)
        self._page(v, "/product", "Product")
        features = _TOPIC_FEATURES[topic]
        first = int(self._random() * len(features))
        for i in range(self._int(1, len(features))):
            feature = features[(first + i) % len(features)]
            self._page(v, f"/features/{feature}", _FEATURE_TITLES[feature], topic)
        if rng.random() < 0.4:
            self._page(v, "/integrations", "Integrations")

    def _do_docs(self, v: _Visit) -> None:
        topic = self._topic(v.account)
        pages = _TOPIC_DOCS[topic]
        first = int(self._random() * len(pages))
        for i in range(self._int(2, len(pages))):
            page = pages[(first + i) % len(pages)]
            self._page(v, f"/docs/{page}", f"{page.replace('-', ' ').capitalize()} | Docs", topic)

    def _pricing_page(self, v: _Visit) -> None:
        rng = self.rng
        self._page(v, "/pricing", "Pricing", "pricing")
        if rng.random() < 0.5:
            # The pricing calculator was used, not just the page loaded.
            props = {"plan": self._pick(_PLANS), "billing": self._pick(("annual", "monthly"))}
            self._web_track(v, "Pricing Viewed", props)

    def _do_pricing(self, v: _Visit) -> None:
        rng = self.rng
        self._pricing_page(v)
        x = rng.random()
        if x < 0.3:
            rival = self._pick(_COMPETITORS)
            self._page(v, f"/compare/{rival}", f"Us vs {rival}")
        elif x < 0.6:
            self._feature_page(v, self._topic(v.account))

    def _do_compare(self, v: _Visit) -> None:
        rng = self.rng
        rival = self._pick(_COMPETITORS)
        path = f"/compare/{rival}" if rng.random() < 0.5 else f"/vs/{rival}"
        self._page(v, path, f"Us vs {rival}")
        if rng.random() < 0.45:
            self._pricing_page(v)

    def _do_form(self, v: _Visit) -> None:
        self._page(v, "/", "Home")
        self._form(v, "Form Submitted", {"form_name": self._pick(_FORMS)})

    def _do_webinar(self, v: _Visit) -> None:
        rng = self.rng
        topic = self._topic(v.account)
        slug = _SLUG[topic]
        title = f"Live: {topic} in practice"
        props = {
            "webinar_id": f"web-{slug}-{self._int(1, 4)}",
            "title": title,
            "topic": topic,
            "content_type": "webinar",
        }
        self._page(v, f"/resources/webinars/{slug}", title, topic)
        self._form(v, "Webinar Registered", props)
        if rng.random() < 0.55:
            when = v.t + int(rng.uniform(2, 10) * _DAY)
            self._schedule(when, v.account.plan.idx, "attend", (v.person, props))

    def _do_demo(self, v: _Visit) -> None:
        self._pricing_page(v)
        v.account.demo_done = True
        self._form(v, "Demo Requested", {"form_name": "demo_request"})

    def _do_trial(self, v: _Visit) -> None:
        self._pricing_page(v)
        self._form(v, "Trial Started", {"plan": "trial", "trial_days": 14})
        account = v.account
        account.product = True
        account.plan_name = "trial"
        self._group(v.t, account, v.person, v.cookie)
        v.t += self._gap(60, 600)
        self._feature(account, v.person, v.t)

    def _crm(self, account: _Account, t: int, action: str) -> None:
        """Outcome events as a CRM sync sends them, attributed to the champion."""
        rng = self.rng
        plan = account.plan
        champion = self._person(account, 0)
        champion.known = True
        props: dict[str, Any]
        if action == "opportunity":
            account.opp_id = f"opp_{rng.getrandbits(40):010x}"
            props = {
                "opportunity_id": account.opp_id,
                "amount": plan.amount,
                "currency": "USD",
                "stage": "qualification",
            }
            self._track(t, account, champion, None, "Opportunity Created", props)
        elif action == "won":
            account.plan_name = plan.customer_plan
            account.product = True
            props = {"opportunity_id": account.opp_id, "amount": plan.amount, "currency": "USD"}
            self._track(t, account, champion, None, "Deal Won", props)
            self._group(t + self._gap(1, 5), account, champion, None)
        elif action == "lost":
            props = {"opportunity_id": account.opp_id, "reason": self._pick(_LOSS_REASONS)}
            self._track(t, account, champion, None, "Deal Lost", props)
        elif action == "churn":
            props = {
                "plan": account.plan_name,
                "reason": self._pick(_CHURN_REASONS),
                "mrr": round(plan.amount / 12),
            }
            self._track(t, account, champion, None, "Subscription Cancelled", props)
            account.plan_name = "cancelled"
            account.product = False
            self._group(t + self._gap(1, 5), account, champion, None)


# ----------------------------------------------------------------------------- public API


class _Clock:
    """Epoch milliseconds to ISO-8601 ``...T..:..:...mmmZ``, caching each hour's prefix."""

    def __init__(self) -> None:
        self._hours: dict[int, str] = {}

    def iso(self, ms: int) -> str:
        hour, rest = divmod(ms, _HOUR)
        prefix = self._hours.get(hour)
        if prefix is None:
            prefix = datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%dT%H:")
            self._hours[hour] = prefix
        minutes, rest = divmod(rest, _MINUTE)
        seconds, millis = divmod(rest, _SECOND)
        return f"{prefix}{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def simulate(config: SimulationConfig) -> Iterator[dict[str, Any]]:
    """Yield simulated Segment-spec events in the order a pipeline receives them: in
    non-decreasing ``timestamp`` order, but for the CRM's events (:data:`CRM_EVENTS`), each
    of which arrives at the first CRM sync after its ``timestamp``
    (``config.crm_sync_minutes``; with 0 every event comes in ``timestamp`` order).

    Parameters
    ----------
    config : SimulationConfig
        Accounts, window, seed and buyer share.

    Yields
    ------
    dict
        One JSON-serialisable Segment event (``identify``, ``track``, ``page`` or ``group``)
        with a unique ``messageId`` (``sim-{seed}-{n}``) and ``context.groupId`` (except
        for unidentified visitors that ``reveal_share`` leaves anonymous).

    >>> events = simulate(SimulationConfig(accounts=50, days=14, seed=3))
    >>> first = next(events)
    >>> first["messageId"], first["type"] in {"identify", "track", "page", "group"}
    ('sim-3-0', True)
    """
    iso = _Clock().iso
    prefix = f"sim-{config.seed}-"
    n = 0
    sync_ms = round(config.crm_sync_minutes * _MINUTE)
    for ts, event in _delivered(_Simulator(config).run(), sync_ms):
        event["messageId"] = f"{prefix}{n}"
        event["timestamp"] = iso(ts)
        n += 1
        yield event
    logger.debug("simulated %d events for %d accounts", n, config.accounts)


def _delivered(
    events: Iterator[tuple[int, dict[str, Any]]], sync_ms: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(ts, event)`` in ``ts`` order, re-ordered as they arrive: CRM events are held until
    the first multiple of ``sync_ms`` after their time (none held when ``sync_ms`` is 0).
    No randomness, so the events are the same whatever the sync; only their order moves.

    >>> crm = {"type": "track", "event": "Deal Won"}
    >>> web = {"type": "page"}
    >>> [ts for ts, _ in _delivered(iter([(5, crm), (7, web), (12, web)]), 10)]
    [7, 5, 12]
    >>> [ts for ts, _ in _delivered(iter([(5, crm), (7, web)]), 0)]
    [5, 7]
    """
    if sync_ms <= 0:
        yield from events
        return
    held: list[tuple[int, int, int, dict[str, Any]]] = []  # (arrival, ts, order, event)
    for order, (ts, event) in enumerate(events):
        while held and held[0][0] <= ts:
            _, when, _, due = heapq.heappop(held)
            yield when, due
        if event["type"] == "track" and event.get("event") in CRM_EVENTS:
            heapq.heappush(held, ((ts // sync_ms + 1) * sync_ms, ts, order, event))
        else:
            yield ts, event
    while held:
        _, when, _, due = heapq.heappop(held)
        yield when, due


def ground_truth(config: SimulationConfig) -> list[AccountTruth]:
    """What really happens to each account in :func:`simulate` with the same ``config``.

    Computed from the accounts' plans alone, without generating events.

    >>> truth = ground_truth(SimulationConfig(accounts=300, seed=5))
    >>> sum(t.converts for t in truth) < 0.3 * len(truth)
    True
    >>> all(t.opportunity_at is not None for t in truth if t.converts)
    True
    """
    clock = _Clock()

    def iso(ms: int | None) -> str | None:
        return None if ms is None else clock.iso(ms)

    truths = []
    start, end = config.start_ms, config.end_ms
    for idx in range(config.accounts):
        plan = _make_plan(config, idx, start, end)
        truths.append(
            AccountTruth(
                account_id=plan.account_id,
                industry=plan.industry,
                employees=plan.employees,
                country=plan.country,
                converts=plan.opportunity_at is not None,
                opportunity_at=iso(plan.opportunity_at),
                won_at=iso(plan.won_at),
                lost_at=iso(plan.lost_at),
                churned_at=iso(plan.churned_at),
                stages=[
                    (clock.iso(t), s)
                    for t, s in zip(plan.stage_times, plan.stage_names, strict=True)
                ],
                kind=plan.kind,
            )
        )
    return truths


def write_jsonl(config: SimulationConfig, events_path: Path, truth_path: Path) -> int:
    """Write the events and the ground truth as JSON lines; return the number of events.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     d = Path(tmp)
    ...     n = write_jsonl(SimulationConfig(accounts=10, days=7), d / "e.jsonl", d / "t.jsonl")
    ...     n == len((d / "e.jsonl").read_bytes().splitlines())
    True
    """
    newline = orjson.OPT_APPEND_NEWLINE
    count = 0
    with open(events_path, "wb") as out:
        chunk: list[bytes] = []
        for event in simulate(config):
            chunk.append(orjson.dumps(event, option=newline))
            count += 1
            if len(chunk) >= 4096:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))
    with open(truth_path, "wb") as out:
        out.write(b"".join(orjson.dumps(t, option=newline) for t in ground_truth(config)))
    return count
