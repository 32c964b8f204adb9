"""Journey stages: every default transition, backward moves, hysteresis, dormancy, CRM
overrides, late and out-of-order events, replay determinism, compact state.

Scenarios run through the real :class:`AccountProcessor` (signals, intent score, stage
machine), one Kafka record per ``send``, so the hook into the pipeline is exercised too.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable
from functools import cache

import orjson
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from intent_stream.pipeline import AccountProcessor, iso
from intent_stream.schemas import load_schema, schema_names
from intent_stream.scoring import HotLeadPolicy, IntentModel
from intent_stream.scoring.signals import AccountSignals
from intent_stream.scoring.stages import (
    StageMachine,
    StageModel,
    StageState,
    default_stage_model,
    parse_stage_model,
)
from intent_stream.scoring.transitions import TransitionModel

T0 = 1_795_000_000.0
DAY = 86400.0


def page(day: float, path: str = "/", person: str = "p1") -> dict:
    return {
        "type": "page",
        "userId": person,
        "timestamp": iso(T0 + day * DAY),
        "properties": {"path": path},
    }


def track(day: float, name: str, person: str = "p1") -> dict:
    return {"type": "track", "event": name, "userId": person, "timestamp": iso(T0 + day * DAY)}


def identify(day: float, person: str = "p1") -> dict:
    return {"type": "identify", "userId": person, "timestamp": iso(T0 + day * DAY)}


class Journey:
    """One account fed record by record through an AccountProcessor with a stage machine."""

    def __init__(self, model: StageModel | None = None, account: str = "acme.com") -> None:
        self.account = account
        self.proc = AccountProcessor(
            model=IntentModel(),
            policy=HotLeadPolicy(),
            clock=lambda: 0.0,
            stages=StageMachine(model=model or default_stage_model()),
        )
        self.table: dict = {}
        self.offset = 0
        self.transitions: list = []

    def send(self, *events: dict) -> list:
        self.offset += 1
        body = [{**e, "context": {"groupId": self.account}} for e in events]
        result = self.proc.process(
            self.table, value=orjson.dumps(body), partition=0, offset=self.offset
        )
        assert not result.dead_letters, result.dead_letters
        self.transitions += result.transitions
        return [(t.from_stage, t.to_stage) for t in result.transitions]

    @property
    def stage(self) -> str:
        return self.table[self.account]["stage"]["s"]

    def path(self) -> list[tuple[str | None, str]]:
        return [(t.from_stage, t.to_stage) for t in self.transitions]

    def ids(self) -> list[str]:
        return [t.transition_id for t in self.transitions]


# -- reaching each stage of the default model ------------------------------------------------


def reach(stage: str) -> Journey:
    """A journey that ends in ``stage`` (day 0-3), by the shortest default route."""
    j = Journey()
    j.send(page(0))
    if stage == "awareness":
        return _at(j, stage)
    if stage == "consideration":
        j.send(track(0.5, "Whitepaper Downloaded"))
        return _at(j, stage)
    j.send(track(1, "Demo Requested"))
    if stage == "evaluation":
        return _at(j, stage)
    j.send(track(2, "Opportunity Created"))
    if stage == "purchase":
        return _at(j, stage)
    j.send(track(3, "Deal Won"))
    if stage == "customer":
        return _at(j, stage)
    if stage == "advocacy":
        j.send(track(3.1, "Referral Sent"), track(3.2, "Review Posted"))
    elif stage == "at_risk":
        j.send(track(3.1, "Support Ticket Escalated"), track(3.2, "Ticket Escalated"))
    elif stage == "churned":
        j.send(track(3.1, "Subscription Cancelled"))
    return _at(j, stage)


def _at(j: Journey, stage: str) -> Journey:
    assert j.stage == stage, j.path()
    return j


def _outcome(frm: str, event: str) -> Callable[[], Journey]:
    def scenario() -> Journey:
        j = reach(frm)
        j.send(track(5, event))
        return j

    return scenario


def _evidence(frm: str, *events: dict) -> Callable[[], Journey]:
    def scenario() -> Journey:
        j = reach(frm)
        j.send(*events)
        return j

    return scenario


def _churned_then(*events: dict) -> Callable[[], Journey]:
    # After Subscription Cancelled's 30-day hold; old evidence has decayed by day 45.
    return _evidence("churned", *events)


def _advocacy_dormant() -> Journey:
    j = reach("advocacy")
    j.send(page(70))  # 60 days of silence from day 3.2
    return j


def _at_risk_recovers() -> Journey:
    j = reach("at_risk")
    # Steady product use for ten weeks: escalations decay (30-day half-life), usage steady.
    for day in range(4, 75):
        j.send(track(day, "Feature Used"), track(day + 0.5, "Feature Used"))
    return j


def _customer_usage_falls() -> Journey:
    j = reach("customer")
    for day in range(4, 40):
        j.send(*(track(day + k / 10, "Feature Used") for k in range(5)))
    j.send(track(56, "Feature Used"))  # then nothing for over two weeks
    return j


OUTCOME_SOURCES = {
    "Opportunity Created": ("purchase", ["awareness", "consideration", "evaluation", "churned"]),
    "Deal Won": (
        "customer",
        ["awareness", "consideration", "evaluation", "purchase", "at_risk", "churned"],
    ),
    "Deal Lost": ("consideration", ["awareness", "evaluation", "purchase"]),
    "Subscription Cancelled": (
        "churned",
        [
            "awareness",
            "consideration",
            "evaluation",
            "purchase",
            "customer",
            "advocacy",
            "at_risk",
        ],
    ),
}

#: (from, to) -> a scenario whose transitions include it. Every pair the default model can
#: produce is here (checked below), so every default transition has a scenario.
SCENARIOS: dict[tuple[str, str], Callable[[], Journey]] = {
    ("none", "awareness"): lambda: reach("awareness"),
    ("awareness", "consideration"): _evidence("awareness", track(1, "Webinar Attended")),
    ("awareness", "evaluation"): _evidence("awareness", track(1, "Demo Requested")),
    ("consideration", "evaluation"): _evidence("consideration", track(1, "Trial Started")),
    # Evidence fades (decayed below the exit thresholds) on the account's next event.
    ("consideration", "awareness"): _evidence("consideration", identify(45)),
    ("evaluation", "consideration"): _evidence("evaluation", identify(32)),
    ("purchase", "evaluation"): _evidence("purchase", page(130)),  # dormant 120 days
    ("customer", "advocacy"): lambda: reach("advocacy"),
    ("customer", "at_risk"): lambda: reach("at_risk"),
    ("advocacy", "customer"): _advocacy_dormant,
    ("advocacy", "at_risk"): _evidence(
        "advocacy", track(4, "Ticket Escalated"), track(4.1, "Ticket Escalated")
    ),
    ("at_risk", "customer"): _at_risk_recovers,
    ("churned", "consideration"): _churned_then(track(45, "Webinar Attended")),
    ("churned", "evaluation"): _churned_then(track(45, "Demo Requested")),
}
for _event, (_to, _sources) in OUTCOME_SOURCES.items():
    for _frm in _sources:
        SCENARIOS[(_frm, _to)] = _outcome(_frm, _event)


def test_the_scenarios_cover_every_transition_the_default_model_can_make():
    assert set(SCENARIOS) == default_stage_model().possible_transitions()


@pytest.mark.parametrize("pair", sorted(SCENARIOS), ids=lambda p: f"{p[0]}->{p[1]}")
def test_every_default_transition_happens(pair):
    journey = SCENARIOS[pair]()
    path = [(f or "none", t) for f, t in journey.path()]
    assert pair in path
    transition = journey.transitions[path.index(pair)]
    assert transition.reason
    assert transition.seq == path.index(pair) + 1


def test_a_converting_journey_moves_forward_with_reasons_and_probabilities():
    j = Journey()
    assert j.send(page(0)) == [(None, "awareness")]
    assert j.send(track(2, "Whitepaper Downloaded")) == [("awareness", "consideration")]
    assert j.send(page(5, "/pricing", "p2"), track(5.1, "Demo Requested", "p2")) == [
        ("consideration", "evaluation")
    ]
    assert j.send(track(9, "Opportunity Created")) == [("evaluation", "purchase")]
    assert j.send(track(30, "Deal Won")) == [("purchase", "customer")]
    last = j.transitions[-1]
    assert last.reason == "CRM outcome: Deal Won"
    assert last.at == T0 + 30 * DAY
    assert last.seconds_in_previous == 21 * DAY
    assert last.next_stage == "advocacy"
    assert 0 < last.probability < 1
    assert 0 < last.churn_probability < 1
    evaluation = j.transitions[2]
    assert "requested a demo" in evaluation.reason
    assert evaluation.next_stage == "purchase"


def test_backward_moves_deal_lost_dormancy_and_faded_evidence():
    j = reach("purchase")
    assert j.send(track(10, "Deal Lost")) == [("purchase", "consideration")]
    # The hold after Deal Lost keeps old evidence from pushing it straight back up.
    assert j.send(track(12, "Pricing Viewed"), track(12.1, "Pricing Viewed")) == []
    assert j.stage == "consideration"
    # Sixty days without activity: back to awareness, stamped when the dormancy began.
    assert j.send(page(80)) == [("consideration", "awareness")]
    assert j.transitions[-1].at == T0 + (12.1 + 60) * DAY
    assert j.transitions[-1].reason == "no activity for 60 days"


def test_dormancy_falls_back_stage_by_stage_in_event_time():
    j = reach("evaluation")
    j.send(page(200))
    tail = j.transitions[-2:]
    assert [(t.from_stage, t.to_stage) for t in tail] == [
        ("evaluation", "consideration"),
        ("consideration", "awareness"),
    ]
    assert [t.at for t in tail] == [T0 + (1 + 45) * DAY, T0 + (1 + 60) * DAY]


def test_customers_do_not_fall_back_into_the_funnel_and_expansions_keep_them():
    j = reach("customer")
    assert j.send(track(5, "Opportunity Created")) == []  # an expansion deal
    assert j.send(track(6, "Deal Lost")) == []  # a lost expansion
    assert j.stage == "customer"


# -- hysteresis ------------------------------------------------------------------------------

_NOISY_RULES = """
version = 1
[[stage]]
name = "cold"
[[stage]]
name = "hot"
enter = ["pricing_view >= 3"]
exit = ["pricing_view < {exit}"]
exit_to = "cold"
"""


def _noisy(exit_threshold: float) -> Journey:
    """Pricing views hovering around 3 (decayed): one view every ~8 days, jittered."""
    j = Journey(parse_stage_model(_NOISY_RULES.format(exit=exit_threshold)))
    rng = random.Random(7)
    day = 0.0
    for _ in range(40):
        day += rng.uniform(6.0, 10.5)
        j.send(page(day, "/pricing"))
    return j


def test_an_account_hovering_near_a_threshold_does_not_flap():
    with_hysteresis = _noisy(1.0)
    assert with_hysteresis.path() == [(None, "cold"), ("cold", "hot")]
    # Control: with the exit threshold equal to the enter one the same account flaps, so the
    # data above really does hover around the threshold.
    without = _noisy(3.0)
    assert len(without.path()) > 6


def test_the_default_evaluation_stage_does_not_flap_on_noisy_high_intent():
    j = reach("consideration")
    rng = random.Random(3)
    day = 1.0
    for _ in range(30):  # pricing and comparison views around high_intent = 3
        day += rng.uniform(2.0, 6.0)
        j.send(page(day, rng.choice(["/pricing", "/compare/x"])))
    into = [p for p in j.path() if p[1] == "evaluation"]
    out_of = [p for p in j.path() if p[0] == "evaluation"]
    assert len(into) == 1
    assert out_of == []


# -- churn warning ---------------------------------------------------------------------------


def test_escalations_warn_with_their_reasons():
    j = reach("at_risk")
    warning = j.transitions[-1]
    assert (warning.from_stage, warning.to_stage) == ("customer", "at_risk")
    assert "support escalations" in warning.reason
    assert warning.churn_probability is not None


def test_declining_product_usage_warns_early():
    j = _customer_usage_falls()
    assert j.path()[-1] == ("customer", "at_risk")
    assert "product usage fell" in j.transitions[-1].reason


def test_falling_active_users_warn():
    j = reach("customer")
    people = [f"u{i}" for i in range(6)]
    for day in range(4, 30):
        j.send(*(track(day, "Feature Used", person=p) for p in people))
    # Only one of six users keeps using the product for three weeks, at a lower rate.
    for day in range(30, 52, 3):
        j.send(track(day, "Feature Used", person="u0"))
    assert ("customer", "at_risk") in j.path()
    assert any("active" in r or "usage fell" in r for r in j.transitions[-1].reasons)


def test_the_churn_model_learns_from_churn_outcomes():
    machine = StageMachine(model=default_stage_model())
    before = machine.churn.n_labels
    j = Journey()
    j.proc.stages = machine
    j.send(page(0), track(1, "Opportunity Created"), track(2, "Deal Won"))
    j.send(track(20, "Subscription Cancelled"))
    assert machine.churn.n_labels == before + 1
    assert machine.churn.n_positive == 1
    # A customer that stays past the churn horizon is a negative label.
    k = Journey()
    k.proc.stages = machine
    k.send(page(0), track(1, "Opportunity Created"), track(2, "Deal Won"))
    for day in range(10, 120, 10):
        k.send(track(day, "Feature Used"))
    assert machine.churn.n_labels == before + 2
    assert machine.churn.n_positive == 1


def test_the_transition_model_learns_from_transitions_and_expiries():
    machine = StageMachine(model=default_stage_model())
    j = Journey()
    j.proc.stages = machine
    j.send(page(0))
    j.send(track(1, "Whitepaper Downloaded"))  # awareness -> consideration: advanced
    assert machine.advance.counts["awareness"] == [1, 1]
    j.send(page(40))  # consideration's 30-day horizon passed: a negative, a new window
    assert machine.advance.counts["consideration"] == [1, 0]


# -- event time, not arrival order -----------------------------------------------------------


def _journey_events() -> list[dict]:
    return [
        page(0),
        page(0.2, "/blog/a", "p2"),
        track(1, "Whitepaper Downloaded", "p2"),
        page(3, "/pricing"),
        track(4, "Demo Requested", "p3"),
        track(6, "Opportunity Created"),
        track(20, "Deal Won"),
        track(25, "Feature Used"),
    ]


def test_events_shuffled_within_records_give_the_same_history():
    records = [_journey_events()[:3], _journey_events()[3:6], _journey_events()[6:]]
    in_order = Journey()
    for record in records:
        in_order.send(*record)
    rng = random.Random(11)
    shuffled = Journey()
    for record in records:
        shuffled.send(*rng.sample(record, len(record)))
    assert shuffled.path() == in_order.path()
    assert shuffled.ids() == in_order.ids()
    assert [t.at for t in shuffled.transitions] == [t.at for t in in_order.transitions]


def test_a_late_record_that_crosses_no_threshold_leaves_the_history_unchanged():
    day0, day1, day2, day5 = (
        [page(0)],
        [page(1, "/blog/x")],
        [track(2, "Whitepaper Downloaded")],
        [track(5, "Demo Requested")],
    )
    in_order = Journey()
    for record in (day0, day1, day2, day5):
        in_order.send(*record)
    late = Journey()
    for record in (day0, day2, day1, day5):  # day 1 arrives after day 2
        late.send(*record)
    assert late.path() == in_order.path()
    assert late.ids() == in_order.ids()


def test_late_events_never_stamp_a_transition_before_the_current_stage():
    j = Journey()
    j.send(page(10))
    j.send(track(12, "Demo Requested"))  # evaluation at day 12
    j.send(track(5, "Opportunity Created"))  # arrives late, dated day 5
    assert j.path()[-1] == ("evaluation", "purchase")
    assert j.transitions[-1].at == T0 + 12 * DAY  # not before the stage it leaves began
    ats = [t.at for t in j.transitions]
    assert ats == sorted(ats)


def test_a_late_outcome_older_than_an_applied_one_does_not_undo_it():
    j = reach("purchase")
    j.send(track(20, "Deal Won"))
    j.send(track(15, "Deal Lost"))  # the CRM's older update arrives last
    assert j.stage == "customer"
    # In event-time order the same outcomes end in the same stage.
    k = reach("purchase")
    k.send(track(15, "Deal Lost"))
    k.send(track(20, "Deal Won"))
    assert k.stage == "customer"


def test_replaying_into_a_fresh_processor_gives_the_same_transition_ids():
    records = [_journey_events()[:3], _journey_events()[3:6], _journey_events()[6:]]
    first, second = Journey(), Journey()
    for record in records:
        first.send(*record)
        second.send(*record)
    assert first.ids() == second.ids()
    assert len(set(first.ids())) == len(first.ids())
    # And a record replayed into the same table is skipped by the replay guard.
    before = len(first.transitions)
    result = first.proc.process(
        first.table,
        value=orjson.dumps([{**e, "context": {"groupId": "acme.com"}} for e in records[-1]]),
        partition=0,
        offset=first.offset,
    )
    assert result.transitions == []
    assert len(first.transitions) == before


# -- state, payload, read model --------------------------------------------------------------


def test_stage_state_is_compact_and_history_bounded():
    j = _at_risk_recovers()
    for day in range(80, 400, 50):  # many more transitions (dormancy, churn, win-back)
        j.send(track(day, "Subscription Cancelled"), track(day + 1, "Deal Won"))
    state = j.table["acme.com"]
    assert len(state["stage"]["h"]) == default_stage_model().history
    # 725 and 1,364 B before the compact layout
    assert len(orjson.dumps(state["stage"])) <= 650
    assert len(orjson.dumps(state)) <= 1100


@cache
def _validator(name: str) -> Draft202012Validator:
    docs = [load_schema(n) for n in schema_names()]
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)
    return Draft202012Validator(load_schema(name), registry=registry)


def test_transition_payloads_match_their_schema():
    j = _customer_usage_falls()
    j.send(track(60, "Subscription Cancelled"))
    assert len(j.transitions) >= 6
    for transition in j.transitions:
        payload = transition.to_payload()
        errors = list(_validator("stage-transition.v1.json").iter_errors(payload))
        assert not errors, (payload, errors)
    assert j.transitions[0].to_payload()["from"] is None


def test_the_snapshot_shows_the_stage_and_its_recent_history():
    j = Journey()
    j.send(page(0))
    result = j.proc.process(
        j.table,
        value=orjson.dumps([{**track(1, "Demo Requested"), "context": {"groupId": "acme.com"}}]),
        partition=0,
        offset=99,
    )
    snapshot = j.proc.render(result.snapshots["acme.com"])
    assert snapshot["stage"] == "evaluation"
    assert snapshot["stage_since"] == iso(T0 + DAY)
    history = snapshot["stage_history"]
    assert [(h["from"], h["to"]) for h in history] == [
        (None, "awareness"),
        ("awareness", "evaluation"),
    ]
    assert history[-1]["transition_id"] == result.transitions[0].transition_id
    assert "requested a demo" in history[-1]["reason"]


def test_a_processor_without_stages_writes_no_stage():
    proc = AccountProcessor(model=IntentModel(), policy=HotLeadPolicy(), clock=lambda: 0.0)
    table: dict = {}
    body = [{**page(0), "context": {"groupId": "a"}}]
    result = proc.process(table, value=orjson.dumps(body), partition=0, offset=1)
    assert "stage" not in table["a"]
    assert result.transitions == []
    assert "stage" not in proc.render(result.snapshots["a"])


def test_the_machine_and_its_models_pickle():
    machine = StageMachine(model=default_stage_model())
    j = Journey()
    j.proc.stages = machine
    j.send(*_journey_events())
    clone = pickle.loads(pickle.dumps(machine))
    assert clone.advance.counts == machine.advance.counts
    assert isinstance(clone.churn, TransitionModel)


def test_settle_is_the_state_a_table_round_trip_gives():
    machine = StageMachine(model=default_stage_model())
    rng = random.Random(8)
    signals, state, now = AccountSignals(), None, T0
    names = ["Demo Requested", "Trial Started", "Feature Used", "Deal Won", "Deal Lost"]
    for _ in range(400):
        now += rng.expovariate(1 / (2 * DAY))
        events = []
        for _ in range(rng.randrange(1, 4)):
            at = now - rng.choice([0.0, 0.0, 3.25, 5 * DAY])
            body = {"type": "track", "event": rng.choice(names)}
            signals.learn_one(signal="product_usage", ts=at, person_id=f"p{rng.randrange(6)}")
            events.append((at, body))
        step = machine.step(
            state, account_id="acme.com", events=events, signals=signals,
            intent_score=rng.uniform(0, 100), now=now,
        )  # fmt: skip
        stored = orjson.loads(orjson.dumps(step.state.to_dict()))
        state = step.state
        state.settle()
        again = StageState.from_dict(stored)
        assert state == again
        assert orjson.dumps(state.to_dict()) == orjson.dumps(again.to_dict())
