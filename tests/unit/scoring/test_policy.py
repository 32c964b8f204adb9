from __future__ import annotations

import pytest

from intent_stream.scoring import (
    RULE_INTENT,
    RULE_STAGE,
    RULE_SURGE,
    RULES,
    AlertRouter,
    HotLeadPolicy,
    PolicyState,
    RouteError,
    alert_id,
    region_of,
)


def _run(policy, scores, *, step=3600.0):
    state, fired = PolicyState(), []
    for i, score in enumerate(scores):
        state, fire = policy.decide(state, score=score, ts=i * step)
        if fire:
            fired.append(i)
    return state, fired


def test_a_noisy_score_near_the_threshold_fires_once():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=0)
    _, fired = _run(policy, [65, 71, 69, 72, 68, 71, 66, 73])
    assert fired == [1]


def test_re_arms_after_falling_below_exit():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=0)
    state, fired = _run(policy, [75, 40, 80])
    assert fired == [0, 2]
    assert state.episode == 2


def test_cooldown_is_in_event_time():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=10 * 3600)
    _, fired = _run(policy, [75, 40, 80, 40, 80, 40, 80, 40, 80, 40, 80, 40, 80])
    assert fired == [0, 10]


def test_state_round_trips():
    state = PolicyState(armed=False, episode=3, last_alert_ts=12.5)
    assert PolicyState.from_dict(state.to_dict()) == state


def test_alert_ids_are_deterministic_and_distinct():
    # Pinned: consumers de-duplicate on it across restarts, replays and upgrades.
    assert alert_id("acme.com", "intent_threshold", 1) == "e20394aebf50fd9e0aee6f11ab01c682"
    assert len({alert_id("a", "r", 1), alert_id("a", "r", 2), alert_id("b", "r", 1)}) == 3


# -- several rules, fit gating, one cooldown per account ----------------------------------

HOUR = 3600.0


def test_a_stage_entry_alerts_only_for_the_configured_stages():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=0, stages=("evaluation", "purchase"))
    state, d = policy.decide_one(PolicyState(), score=20, ts=0, stages=("consideration",))
    assert not d.fired
    assert state == PolicyState()
    state, d = policy.decide_one(state, score=20, ts=1, stages=("evaluation",))
    assert d.rules == (RULE_STAGE,)
    assert d.stages == ("evaluation",)
    assert state.episode == 1
    assert state.last_rule == RULE_STAGE
    assert state.armed  # the intent threshold was not used: it stays armed
    state, d = policy.decide_one(state, score=20, ts=2, stages=("purchase",))
    assert d.rules == (RULE_STAGE,)
    assert state.episode == 2


def test_a_surge_start_alerts_and_names_its_topics():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=0)
    state, d = policy.decide_one(PolicyState(), score=30, ts=0, surges=("data security",))
    assert d.rules == (RULE_SURGE,)
    assert d.surges == ("data security",)
    assert state.last_rule == RULE_SURGE


def test_rules_not_in_use_never_fire():
    policy = HotLeadPolicy(rules=(RULE_INTENT,), cooldown_s=0)
    _, d = policy.decide_one(PolicyState(), score=30, ts=0, stages=("evaluation",), surges=("x",))
    assert not d.fired
    assert d.suppressed == ()
    only_stage = HotLeadPolicy(rules=(RULE_STAGE,), cooldown_s=0)
    state, d = only_stage.decide_one(PolicyState(), score=95, ts=0)
    assert not d.fired
    assert state.armed
    with pytest.raises(ValueError, match="unknown alert rule"):
        HotLeadPolicy(rules=("intent_threshold", "gut_feeling"))


def test_rules_firing_together_make_one_alert_naming_them_all():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=0)
    state, d = policy.decide_one(
        PolicyState(), score=85, ts=0, stages=("evaluation",), surges=("ai", "cost")
    )
    assert d.rules == RULES == (RULE_INTENT, RULE_STAGE, RULE_SURGE)
    assert d.rule == RULE_INTENT  # the primary rule, first in priority order
    assert state.episode == 1  # one alert, one episode
    assert not state.armed
    # Without the intent threshold the stage entry is the primary rule.
    _, d = policy.decide_one(PolicyState(), score=40, ts=0, stages=("purchase",), surges=("x",))
    assert d.rule == RULE_STAGE
    assert d.rules == (RULE_STAGE, RULE_SURGE)


def test_the_cooldown_is_shared_by_the_rules():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=24 * HOUR)
    state, d = policy.decide_one(PolicyState(), score=40, ts=0, stages=("evaluation",))
    assert d.rules == (RULE_STAGE,)
    # The same burst goes on: the score crosses the threshold and a surge starts, within the
    # cooldown: no second alert, and both are counted as held back by the cooldown.
    state, d = policy.decide_one(state, score=80, ts=2 * HOUR, surges=("security",))
    assert not d.fired
    assert set(d.suppressed) == {(RULE_INTENT, "cooldown"), (RULE_SURGE, "cooldown")}
    assert state.armed
    assert state.episode == 1
    # After the cooldown the still-hot account alerts on the threshold (it stayed armed).
    state, d = policy.decide_one(state, score=80, ts=25 * HOUR)
    assert d.rules == (RULE_INTENT,)
    assert state.episode == 2


def test_the_threshold_re_arms_below_exit_even_during_the_cooldown():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=10 * HOUR)
    state, _ = policy.decide_one(PolicyState(), score=75, ts=0)
    state, d = policy.decide_one(state, score=45, ts=HOUR)
    assert state.armed
    assert not d.fired
    state, d = policy.decide_one(state, score=75, ts=2 * HOUR)  # armed, but cooling down
    assert d.suppressed == ((RULE_INTENT, "cooldown"),)
    state, d = policy.decide_one(state, score=71, ts=11 * HOUR)
    assert d.rules == (RULE_INTENT,)


def test_weak_fit_accounts_need_a_higher_score_to_cross_the_threshold():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=0, weak_fit_points=10)
    state, d = policy.decide_one(PolicyState(), score=75, ts=0, fit_band="weak")
    assert not d.fired
    assert d.threshold == 80.0
    assert d.suppressed == ((RULE_INTENT, "weak_fit"),)
    assert state.armed  # not spent: crossing the raised threshold later still alerts
    state, d = policy.decide_one(state, score=81, ts=1, fit_band="weak")
    assert d.rules == (RULE_INTENT,)
    assert d.threshold == 80.0
    for band in ("moderate", "strong"):
        _, d = policy.decide_one(PolicyState(), score=75, ts=0, fit_band=band)
        assert d.fired
        assert d.threshold == 70.0


def test_weak_fit_surges_and_stage_entries_need_a_minimum_intent_score():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=0, weak_fit_min_score=50)
    kwargs = {"stages": ("evaluation",), "surges": ("ai",)}
    state, d = policy.decide_one(PolicyState(), score=30, ts=0, fit_band="weak", **kwargs)
    assert not d.fired
    assert state.episode == 0
    assert set(d.suppressed) == {(RULE_STAGE, "weak_fit"), (RULE_SURGE, "weak_fit")}
    _, d = policy.decide_one(PolicyState(), score=55, ts=0, fit_band="weak", **kwargs)
    assert d.rules == (RULE_STAGE, RULE_SURGE)
    _, d = policy.decide_one(PolicyState(), score=30, ts=0, fit_band="moderate", **kwargs)
    assert d.rules == (RULE_STAGE, RULE_SURGE)


def test_a_surge_alerts_only_with_some_intent_behind_it():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=0, surge_min_score=30)
    state, d = policy.decide_one(PolicyState(), score=29.9, ts=0, surges=("ai",))
    assert not d.fired
    assert state.episode == 0
    assert d.suppressed == ((RULE_SURGE, "low_intent"),)
    assert d.surges == ("ai",)
    _, d = policy.decide_one(PolicyState(), score=30, ts=0, surges=("ai",))
    assert d.rules == (RULE_SURGE,)
    # The gate is the surge's alone: a stage entry in the same record still alerts.
    _, d = policy.decide_one(PolicyState(), score=10, ts=0, stages=("evaluation",), surges=("ai",))
    assert d.rules == (RULE_STAGE,)
    assert d.suppressed == ((RULE_SURGE, "low_intent"),)
    # A weak-fit account below its own minimum is held back as weak fit.
    _, d = policy.decide_one(PolicyState(), score=40, ts=0, fit_band="weak", surges=("ai",))
    assert d.suppressed == ((RULE_SURGE, "weak_fit"),)


def test_the_fit_band_is_asked_only_when_a_rule_fires():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=0)
    calls = []

    def band():
        calls.append(1)
        return "strong"

    policy.decide_one(PolicyState(), score=40, ts=0, fit_band=band)
    assert calls == []
    _, d = policy.decide_one(PolicyState(), score=40, ts=0, fit_band=band, surges=("x",))
    assert d.fired
    assert calls == [1]


def test_the_same_history_gives_the_same_states_and_alert_ids():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=5 * HOUR)
    history = [
        {"score": 30, "stages": ("consideration",)},
        {"score": 45, "surges": ("ai",)},
        {"score": 72, "stages": ("evaluation",)},
        {"score": 40},
        {"score": 80, "stages": ("purchase",)},
        {"score": 90},
    ]

    def replay():
        state, ids = PolicyState(), []
        for i, step in enumerate(history):
            state, d = policy.decide_one(state, ts=i * 3 * HOUR, **step)
            if d.fired:
                ids.append(alert_id("acme.com", d.rule, state.episode))
        return state, ids

    first, second = replay(), replay()
    assert first == second
    # The surge alerts; the evaluation entry 3 h later is within the cooldown; the purchase
    # entry with the threshold crossed makes the second alert; 90 finds the threshold spent.
    assert first[1] == [alert_id("acme.com", RULE_SURGE, 1), alert_id("acme.com", RULE_INTENT, 2)]


def test_policy_state_keeps_the_last_alert_compactly_and_loads_older_states():
    old = {"a": False, "e": 3, "t": 12.5}  # stored before there were several rules
    state = PolicyState.from_dict(old)
    assert state.last_rule == RULE_INTENT
    assert state.last_score is None
    assert state.to_dict() == old  # nothing added while nothing new is known
    assert PolicyState().to_dict() == {"a": True, "e": 0, "t": None}
    full = PolicyState(
        armed=True,
        episode=4,
        last_alert_ts=99.0,
        last_rule=RULE_STAGE,
        last_score=64.2,
        last_stage="evaluation",
        last_topics=("ai", "security"),
        last_people=3,
    )
    assert PolicyState.from_dict(full.to_dict()) == full
    assert len(str(full.to_dict())) < 150
    remembered = state.remember(score=81.26, stage=None, topics=["z", "b", "a", "c"], people=2)
    assert remembered.last_score == 81.3
    assert remembered.last_topics == ("a", "b", "c")
    assert remembered.last_people == 2


# -- routing -----------------------------------------------------------------------------


def test_routes_match_in_order_with_text_and_number_conditions():
    router = AlertRouter(
        "region=EMEA & employees>=1000 -> emea-enterprise;"
        " industry=banking|Finance -> fs-team;"
        " country!=us & employees<50 -> smb-desk;"
        " fit_band=strong -> top-accounts",
        default="queue-{region}",
    )
    assert router.route({"country": "Germany", "employees": 5000}).owner == "emea-enterprise"
    assert router.route({"country": "DE", "employees": "1,200"}).owner == "emea-enterprise"
    assert router.route({"country": "DE", "employees": 200}).owner == "queue-emea"
    assert router.route({"country": "DE", "industry": " FINANCE "}).owner == "fs-team"
    assert router.route({"country": "FR", "employees": 10}).owner == "smb-desk"
    assert router.route({"country": "US", "employees": 10}).owner == "queue-na"
    assert router.route({"employees": "lots"}).owner == "queue-unknown"
    assert router.route({}, fit_band="strong").owner == "top-accounts"
    route = router.route({"country": "SG"})
    assert route.to_payload() == {"owner": "queue-apac", "matched": "default", "region": "APAC"}


def test_a_catch_all_route_and_the_default_route():
    assert AlertRouter("* -> inbox").route({"country": "BR"}).owner == "inbox"
    assert AlertRouter().route({"country": "BR"}).owner == "sales-latam"


@pytest.mark.parametrize(
    "rules",
    ["region=EMEA", "-> owner", "region=EMEA ->", "employees>=many -> x", "employees>=1|2 -> x"],
)
def test_bad_routing_rules_are_refused_with_the_rule_quoted(rules):
    with pytest.raises(RouteError):
        AlertRouter(rules)


def test_regions_come_from_country_codes_and_names():
    assert [region_of(c) for c in ("us", "CA", "Mexico", "gb", "South  Africa", "jp")] == [
        "NA",
        "NA",
        "LATAM",
        "EMEA",
        "EMEA",
        "APAC",
    ]
    assert region_of("") is None
    assert region_of(42) is None
