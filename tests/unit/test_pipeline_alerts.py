"""Hot-lead alerts through AccountProcessor: rules, fit gating, payload, what is new."""

from __future__ import annotations

from functools import cache

import orjson
from jsonschema import Draft202012Validator

from intent_stream.alerts.config import alert_policy
from intent_stream.pipeline import AccountProcessor, iso, shown_person
from intent_stream.schemas import load_schema
from intent_stream.scoring import (
    RULE_INTENT,
    RULE_STAGE,
    RULE_SURGE,
    AlertRouter,
    FitModel,
    HotLeadPolicy,
    IntentModel,
    alert_id,
)
from intent_stream.scoring.stages import StageMachine, StageState, default_stage_model
from intent_stream.settings import Settings
from tests.unit.segment import T0, segment_event

DAY = 86400.0


class _FixedFit(FitModel):
    """A fit model whose score is fixed (a weak, moderate or strong account)."""

    def __init__(self, score: float) -> None:
        super().__init__()
        self.fixed = score

    def score_one(self, x):
        return self.fixed


def _processor(policy=None, fit=None):
    return AccountProcessor(
        model=IntentModel(),
        policy=policy or HotLeadPolicy(enter=70, exit=50, cooldown_s=DAY),
        clock=lambda: 0.0,
        stages=StageMachine(model=default_stage_model()),
        **({"fit": fit} if fit is not None else {}),
    )


_ev = segment_event


def _track(account, t, name, person="p1"):
    return _ev(account, t, "track", event=name, person=person)


def _identify(account, t, person, **traits):
    return _ev(account, t, "identify", person=person, traits=traits)


def _group(account, t, **traits):
    return _ev(account, t, "group", groupId=account, traits=traits)


def _hot(account, t=0.0):
    """Six people on pricing, a demo request and a trial: intent and stage entry together."""
    events = [_ev(account, t + i, person=f"p{i}") for i in range(6)]
    return [
        *events,
        _track(account, t + 10, "Demo Requested"),
        _track(account, t + 11, "Trial Started"),
    ]


def _blog(account, t, topic=None, person="p1"):
    props = {"path": "/blog/a", **({"topic": topic} if topic else {})}
    return _ev(account, t, path="/blog/a", person=person, properties=props)


def _surge_history(account):
    """An even trickle on one topic for 12 weeks, then a burst: the surge starts at the end."""
    trickle = [[_blog(account, d * DAY, "security")] for d in range(0, 84, 4)]
    burst = [[_blog(account, (85 + i / 4) * DAY, "security") for i in range(12)]]
    return trickle + burst


class _Feed:
    def __init__(self, proc):
        self.proc, self.table, self.offset = proc, {}, 0
        self.triggers: dict = {}

    def __call__(self, events):
        result = self.proc.process(
            self.table, value=orjson.dumps(events), partition=0, offset=self.offset
        )
        self.offset += 1
        for key, n in result.alert_triggers.items():
            self.triggers[key] = self.triggers.get(key, 0) + n
        return [orjson.loads(a.value) for a in result.alerts], result


@cache
def _validator():
    return Draft202012Validator(load_schema("sales-alert.v1.json"))


def _valid(alert):
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(alert)]
    assert not errors, errors
    assert set(alert) == set(load_schema("sales-alert.v1.json")["properties"])


def test_a_hot_record_makes_one_alert_naming_the_threshold_and_the_stage_entry():
    feed = _Feed(_processor())
    feed([_ev("acme.com", -60, path="/blog/a")])
    (alert,), result = feed(_hot("acme.com"))
    _valid(alert)
    assert alert["rules"] == [RULE_INTENT, RULE_STAGE]
    assert alert["rule"] == RULE_INTENT
    assert alert["alert_id"] == alert_id("acme.com", RULE_INTENT, 1)
    assert alert["stage"] == "evaluation"
    assert alert["previous_stage"] == "awareness"
    assert alert["triggers"][0].startswith("intent score")
    assert alert["triggers"][1].startswith("entered evaluation")
    assert alert["threshold"] == 70.0
    assert result.alerts[0].rule == RULE_INTENT
    assert result.alerts[0].interval is None
    assert feed.triggers == {(RULE_INTENT, "alerted"): 1, (RULE_STAGE, "alerted"): 1}


def test_entering_evaluation_alerts_below_the_intent_threshold():
    feed = _Feed(_processor())
    assert feed([_blog("form.example", 0)])[0] == []
    (alert,), _ = feed([_track("form.example", 100, "Form Submitted")])
    _valid(alert)
    assert alert["intent_score"] < 70
    assert alert["rules"] == [RULE_STAGE]
    assert alert["alert_id"] == alert_id("form.example", RULE_STAGE, 1)
    assert alert["triggers"] == [f"entered evaluation ({_reason(feed, 'form.example')})"]
    assert (alert["previous_stage"], alert["stage"]) == ("awareness", "evaluation")


def _reason(feed, account):
    return StageState.from_dict(feed.table[account]["stage"]).history[-1][3]


def test_stages_not_configured_do_not_alert():
    policy = HotLeadPolicy(enter=70, exit=50, cooldown_s=DAY, stages=("purchase",))
    feed = _Feed(_processor(policy))
    feed([_blog("form.example", 0)])
    assert feed([_track("form.example", 100, "Form Submitted")])[0] == []
    (alert,), _ = feed([_track("form.example", 200, "Opportunity Created")])
    assert alert["rules"] == [RULE_STAGE]
    assert alert["stage"] == "purchase"


def test_a_topic_surge_start_alerts_and_says_which_topic():
    feed = _Feed(_processor())
    alerts = [alert for batch in _surge_history("surge.example") for alert in feed(batch)[0]]
    (alert,) = alerts
    _valid(alert)
    assert alert["rules"] == [RULE_SURGE]
    assert alert["intent_score"] < 70
    assert alert["triggers"] == ["surge of interest in security started"]
    assert alert["topics"][0]["topic"] == "security"
    assert alert["topics"][0]["new"] is True
    assert alert["topics"][0]["surge"] >= 60


def test_weak_fit_accounts_need_more_evidence():
    weak = _Feed(_processor(fit=_FixedFit(20.0)))
    weak([_blog("form.example", 0)])
    assert weak([_track("form.example", 100, "Form Submitted")])[0] == []
    assert weak.triggers == {(RULE_STAGE, "weak_fit"): 1}
    strong = _Feed(_processor(fit=_FixedFit(90.0)))
    strong([_blog("form.example", 0)])
    (alert,), _ = strong([_track("form.example", 100, "Form Submitted")])
    assert (alert["fit_band"], alert["fit_score"]) == ("strong", 90.0)


def test_a_weak_fit_account_crossing_only_the_normal_threshold_is_held_back():
    policy = HotLeadPolicy(
        enter=70, exit=50, cooldown_s=DAY, weak_fit_points=29, rules=[RULE_INTENT]
    )
    feed = _Feed(_processor(policy, fit=_FixedFit(20.0)))
    alerts, _ = feed(_hot("acme.com"))
    score = feed.table["acme.com"]["score"]
    assert 70 <= score < 99  # above the normal threshold, below the raised one
    assert alerts == []
    assert feed.triggers == {(RULE_INTENT, "weak_fit"): 1}


def test_one_cooldown_per_account_whatever_rule_fires():
    feed = _Feed(_processor())
    feed([_blog("acme.com", 0)])
    (first,), _ = feed([_track("acme.com", 100, "Form Submitted")])
    assert first["rules"] == [RULE_STAGE]
    # An hour later the same burst crosses the intent threshold: no second alert.
    assert feed(_hot("acme.com", 3600))[0] == []
    assert feed.triggers[(RULE_INTENT, "cooldown")] == 1
    # The threshold stayed armed: the next activity after the cooldown alerts.
    (second,), result = feed([_ev("acme.com", DAY + 200, person="p9")])
    assert second["rules"] == [RULE_INTENT]
    assert second["episode"] == 2
    assert result.alerts[0].interval == DAY + 100


def test_the_payload_lists_people_activities_route_and_stage():
    policy = alert_policy(Settings(alert_routes="region=EMEA & employees>=1000 -> emea-enterprise"))
    feed = _Feed(_processor(policy))
    feed(
        [
            _group("acme.de", 0, country="DE", employees=5000, industry="Software"),
            _identify("acme.de", 1, "vp-1", role="VP Engineering", seniority="vp"),
            _identify("acme.de", 2, "ann@acme.de", role="Analyst"),
            _ev("acme.de", 5, person="ann@acme.de"),
            _blog("acme.de", 6, person="dev-2"),
        ]
    )
    (alert,), _ = feed(
        [
            _ev("acme.de", 100 + i, person=p)
            for i, p in enumerate(["vp-1", "ann@acme.de", "dev-2", "x-3", "x-4"])
        ]
        + [
            _track("acme.de", 200, "Demo Requested", person="vp-1"),
            _track("acme.de", 201, "Trial Started", person="x-3"),
        ]
    )
    _valid(alert)
    assert alert["route"] == {
        "owner": "emea-enterprise",
        "matched": "region=EMEA & employees>=1000",
        "region": "EMEA",
    }
    people = alert["people"]
    assert people[0] == {
        "id": "vp-1",
        "role": "VP Engineering",
        "senior": True,
        "last_seen": iso(T0 + 200),
    }
    assert len(people) == 5
    assert alert["people_count"] == 5
    ids = [p["id"] for p in people]
    assert "ann@acme.de" not in orjson.dumps(alert).decode()  # emails are hidden by default
    assert shown_person("ann@acme.de", show_emails=False) in ids
    analyst = next(p for p in people if p["role"] == "Analyst")
    assert analyst["senior"] is False
    activities = alert["activities"]
    assert [a["type"] for a in activities] == ["trial_start", "demo_request", "pricing_view"]
    assert activities[0] == {
        "at": iso(T0 + 201),
        "type": "trial_start",
        "text": "started a trial",
        "person": "x-3",
    }
    assert activities[1]["person"] == "vp-1"
    assert alert["stage"] == "evaluation"


def test_emails_are_shown_only_when_configured():
    feed = _Feed(_processor(alert_policy(Settings(alert_emails="show"))))
    (alert,), _ = feed([*_hot("acme.com"), _ev("acme.com", 12, person="ann@acme.com")])
    assert "ann@acme.com" in [p["id"] for p in alert["people"]]


def test_the_default_route_is_the_region_of_the_country():
    feed = _Feed(_processor())
    (alert,), _ = feed([_group("acme.jp", 0, country="Japan"), *_hot("acme.jp", 1)])
    assert alert["route"] == {"owner": "sales-apac", "matched": "default", "region": "APAC"}
    feed = _Feed(_processor(HotLeadPolicy(router=AlertRouter(default="inbox"))))
    (alert,), _ = feed(_hot("nowhere.example"))
    assert alert["route"] == {"owner": "inbox", "matched": "default", "region": None}


def test_each_alert_says_what_is_new_since_the_previous_one():
    feed = _Feed(_processor())
    feed([_blog("acme.com", 0, person="p1")])
    (first,), _ = feed([_track("acme.com", 100, "Form Submitted", person="p1")])
    assert first["since_last_alert"] is None
    later = 2 * DAY
    (second,), _ = feed(
        [_ev("acme.com", later + i, person=f"n{i}") for i in range(5)]
        + [_track("acme.com", later + 10, "Demo Requested", person="n0")]
    )
    _valid(second)
    since = second["since_last_alert"]
    assert since["alert_id"] == first["alert_id"]
    assert since["rule"] == RULE_STAGE
    assert since["at"] == first["event_time"]
    assert since["hours"] == round((later + 10 - 100) / 3600, 1)
    assert since["intent_score"] == {
        "then": first["intent_score"],
        "now": second["intent_score"],
        "change": round(second["intent_score"] - first["intent_score"], 1),
    }
    assert since["stage"] == {"then": "evaluation", "now": "evaluation", "changed": False}
    assert since["new_signals"] == ["requested a demo", "viewed pricing"]
    assert since["people"]["then"] == 1
    assert since["people"]["now"] == 6
    assert sorted(since["people"]["active"]) == [f"n{i}" for i in range(5)]


def test_an_account_stored_before_the_rules_existed_links_to_its_intent_alert():
    feed = _Feed(_processor())
    feed(_hot("acme.com"))
    state = feed.table["acme.com"]
    # What the previous version stored: no rule, score, stage, topics or people at the alert.
    state["policy"] = {"a": True, "e": 1, "t": T0 + 11}
    (alert,), _ = feed([_ev("acme.com", 2 * DAY, person="p7")])
    since = alert["since_last_alert"]
    assert since["alert_id"] == alert_id("acme.com", RULE_INTENT, 1)
    assert since["intent_score"] is None
    assert since["people"]["then"] is None
    assert alert["episode"] == 2
    _valid(alert)


def test_replaying_the_records_into_a_fresh_processor_gives_the_same_alerts():
    records = [[_blog("acme.com", 0)], [_track("acme.com", 100, "Form Submitted")]]
    records += [_hot("acme.com", 2 * DAY), *_surge_history("surge.example")]
    records += [[_track("acme.com", 5 * DAY, "Opportunity Created")]]

    def run():
        feed = _Feed(_processor())
        return [a for batch in records for a in feed(batch)[0]]

    first, second = run(), run()
    assert first == second
    assert len({a["alert_id"] for a in first}) == len(first) >= 3
    assert {a["rule"] for a in first} >= {RULE_STAGE, RULE_SURGE}


def test_falling_back_from_purchase_to_evaluation_does_not_alert():
    feed = _Feed(_processor())
    feed([_blog("acme.com", 0)])
    (alert,), _ = feed([_track("acme.com", 100, "Opportunity Created")])
    assert alert["stage"] == "purchase"
    # The opportunity goes quiet past purchase's dormant days: back to evaluation, no alert.
    alerts, result = feed([_blog("acme.com", 130 * DAY)])
    moves = [(t.from_stage, t.to_stage) for t in result.transitions]
    assert moves[0] == ("purchase", "evaluation")
    assert alerts == []
    assert feed.triggers == {(RULE_STAGE, "alerted"): 1}


def test_the_rule_names_agree_wherever_they_are_listed():
    from intent_stream import metrics, settings
    from intent_stream.scoring import RULES

    # metrics and settings do not import scoring (it loads River): they keep copies.
    assert metrics.ALERT_RULES == settings._ALERT_RULES == RULES
    assert tuple(load_schema("sales-alert.v1.json")["$defs"]["rule"]["enum"]) == RULES
