from __future__ import annotations

from intent_stream.scoring import HotLeadPolicy, PolicyState, alert_id


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
    assert alert_id("a", "r", 1) == alert_id("a", "r", 1)
    assert len({alert_id("a", "r", 1), alert_id("a", "r", 2), alert_id("b", "r", 1)}) == 3
