from __future__ import annotations

import dataclasses
import itertools
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime

import orjson
import pytest

from intent_stream.events import parse_event, parse_timestamp
from intent_stream.simulate import (
    CRM_EVENTS,
    HIGH_INTENT_EVENTS,
    KINDS,
    STAGES,
    SimulationConfig,
    ground_truth,
    simulate,
    write_jsonl,
)

CONFIG = SimulationConfig(accounts=400, days=90, seed=11)

TRACK_EVENTS = {
    "Email Opened",
    "Email Clicked",
    "Whitepaper Downloaded",
    "Case Study Downloaded",
    "Webinar Registered",
    "Webinar Attended",
    "Form Submitted",
    "Pricing Viewed",
    "Demo Requested",
    "Trial Started",
    "Feature Used",
    "Opportunity Created",
    "Deal Won",
    "Deal Lost",
    "Subscription Cancelled",
}
PAGE_PATH = re.compile(
    r"^(/|/product|/integrations|/pricing|/(blog|resources|docs|features|compare|vs)/[a-z0-9/-]+)$"
)
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ROLES = {"engineering", "it", "finance", "procurement", "operations", "executive", "marketing"}
SENIORITY = {"c_level", "vp", "director", "manager", "individual"}


@pytest.fixture(scope="module")
def events():
    return list(simulate(CONFIG))


@pytest.fixture(scope="module")
def truth():
    return ground_truth(CONFIG)


def test_same_seed_same_events_and_another_seed_other_events(events):
    assert list(simulate(CONFIG)) == events
    other = list(simulate(dataclasses.replace(CONFIG, seed=12)))
    assert other != events
    assert other[0]["messageId"].startswith("sim-12-")


def test_timestamps_are_iso_milliseconds_inside_the_window_and_in_arrival_order(events):
    stamps = [e["timestamp"] for e in events]
    assert all(ISO_MS.match(s) for s in stamps)
    epochs = [parse_timestamp(s) for s in stamps]
    assert min(epochs) >= CONFIG.start_ms / 1000
    assert max(epochs) < CONFIG.end_ms / 1000
    crm = [e.get("event") in CRM_EVENTS for e in events]
    # Everything but the CRM's events comes in time order.
    others = [t for t, is_crm in zip(epochs, crm, strict=True) if not is_crm]
    assert others == sorted(others)
    # A CRM event arrives at the first hourly sync after it: after every other event
    # before that hour, before every other event from it on.
    late = 0
    for i, (t, is_crm) in enumerate(zip(epochs, crm, strict=True)):
        if not is_crm:
            continue
        sync = (t // 3600 + 1) * 3600
        assert all(u < sync for u, c in zip(epochs[:i], crm[:i], strict=True) if not c)
        assert all(u >= sync for u, c in zip(epochs[i:], crm[i:], strict=True) if not c)
        late += any(u > t for u in epochs[:i])
    assert late > 0  # some do arrive after later events: the stream has late events


def test_the_crm_sync_moves_only_the_order_of_events(events):
    at_once = list(simulate(dataclasses.replace(CONFIG, crm_sync_minutes=0)))
    epochs = [parse_timestamp(e["timestamp"]) for e in at_once]
    assert epochs == sorted(epochs)

    def content(stream):
        return sorted(orjson.dumps({**e, "messageId": ""}) for e in stream)

    assert content(at_once) == content(events)
    with pytest.raises(ValueError, match="crm_sync_minutes must be 0 or more"):
        SimulationConfig(crm_sync_minutes=-1)


def test_every_event_is_a_valid_segment_message_for_the_engine(events):
    ids = [e["messageId"] for e in events]
    assert len(set(ids)) == len(ids)
    for event in events:
        assert event["type"] in {"identify", "track", "page", "group"}
        assert event.get("userId") or event.get("anonymousId")
        assert event["context"]["groupId"]
        parsed = parse_event(event)  # the engine's own checks
        assert parsed.account_id == event["context"]["groupId"]
    assert orjson.loads(orjson.dumps(events)) == events


def test_vocabulary_is_the_one_the_scorer_understands(events):
    for event in events:
        kind = event["type"]
        if kind == "track":
            assert event["event"] in TRACK_EVENTS
            props = event["properties"]
            if event["event"] in {"Whitepaper Downloaded", "Case Study Downloaded"}:
                assert props["topic"]
                assert props["content_type"]
        elif kind == "page":
            page = event["context"]["page"]
            assert PAGE_PATH.match(page["path"]), page["path"]
            assert page["url"].endswith(page["path"])
            assert event["properties"]["path"] == page["path"]
            assert event["name"] == page["title"]
        elif kind == "identify":
            traits = event["traits"]
            assert traits["role"] in ROLES
            assert traits["seniority"] in SENIORITY
            assert "@" in traits["email"]
            assert traits["name"]
            assert traits["title"]
        else:
            assert event["groupId"] == event["context"]["groupId"]
            assert set(event["traits"]) >= {
                "name",
                "industry",
                "employees",
                "country",
                "plan",
                "website",
            }
    kinds = Counter(e["type"] for e in events)
    assert kinds["page"]
    assert kinds["track"]
    assert kinds["identify"]
    assert kinds["group"]
    assert sum("campaign" in e["context"] for e in events) > 0


def test_truth_matches_the_events(events, truth):
    by_account = defaultdict(list)
    for event in events:
        by_account[event["context"]["groupId"]].append(event)
    assert set(by_account) <= {t.account_id for t in truth}
    assert len({t.account_id for t in truth}) == len(truth)
    converters = [t for t in truth if t.converts]
    assert converters
    for t in truth:
        tracks = [e for e in by_account[t.account_id] if e["type"] == "track"]
        opportunities = [e["timestamp"] for e in tracks if e["event"] == "Opportunity Created"]
        if t.converts:
            assert opportunities == [t.opportunity_at]
        else:
            assert opportunities == []
            assert t.opportunity_at is None
        for name, when in (
            ("Deal Won", t.won_at),
            ("Deal Lost", t.lost_at),
            ("Subscription Cancelled", t.churned_at),
        ):
            stamps = [e["timestamp"] for e in tracks if e["event"] == name]
            assert stamps == ([] if when is None else [when]), (t.account_id, name)
        if t.won_at or t.lost_at:
            assert t.opportunity_at is not None
            assert t.opportunity_at < (t.won_at or t.lost_at)
        assert t.stages[0][0] == "2026-01-01T00:00:00.000Z"
        assert [s for _, s in t.stages]
        assert all(s in STAGES for _, s in t.stages)
        assert [when for when, _ in t.stages] == sorted(when for when, _ in t.stages)
        assert t.kind in KINDS


def test_outcomes_happen_and_most_accounts_never_buy(truth):
    assert 0.03 < sum(t.converts for t in truth) / len(truth) < 0.3
    assert any(t.won_at for t in truth)
    assert any(t.lost_at for t in truth)
    assert any(t.churned_at for t in truth)
    assert any("purchase" in [s for _, s in t.stages] for t in truth)
    # Some journeys stall: a stage is followed by an earlier one before any purchase.
    order = {s: i for i, s in enumerate(STAGES)}
    stalled = 0
    for t in truth:
        ranks = [order[s] for _, s in t.stages if s in STAGES[1:5]]
        stalled += any(b < a for a, b in itertools.pairwise(ranks))
    assert stalled > 0


def test_buyer_share_is_respected_on_average():
    config = SimulationConfig(accounts=2000, seed=3, buyer_share=0.25)
    share = sum(t.kind == "buyer" for t in ground_truth(config)) / config.accounts
    assert 0.18 < share < 0.32
    none = SimulationConfig(accounts=300, seed=3, buyer_share=0.0)
    assert not any(t.kind == "buyer" or t.converts for t in ground_truth(none))


def test_converters_show_more_high_intent_than_non_converters(events, truth):
    high = Counter(
        e["context"]["groupId"]
        for e in events
        if (e["type"] == "track" and e["event"] in HIGH_INTENT_EVENTS)
        or (e["type"] == "page" and e["context"]["page"]["path"] in {"/pricing"})
    )
    converters = [high[t.account_id] for t in truth if t.converts]
    others = [high[t.account_id] for t in truth if not t.converts]
    assert sum(converters) / len(converters) > 3 * sum(others) / len(others)
    demo = {e["context"]["groupId"] for e in events if e.get("event") == "Demo Requested"}
    assert sum(t.account_id in demo for t in truth if t.converts) > 0.5 * len(converters)


def test_buying_accounts_are_busier_than_the_rest(events, truth):
    per_account = Counter(e["context"]["groupId"] for e in events)
    kind_of = {t.account_id: t.kind for t in truth}
    by_kind = defaultdict(list)
    for account_id, kind in kind_of.items():
        by_kind[kind].append(per_account[account_id])
    mean = {kind: sum(v) / len(v) for kind, v in by_kind.items()}
    assert 40 <= mean["buyer"] <= 150
    assert mean["passive"] < mean["buyer"] / 3
    assert mean["drive_by"] < 10
    # A buying committee: several people per converting account.
    people = defaultdict(set)
    for e in events:
        if e.get("userId"):
            people[e["context"]["groupId"]].add(e["userId"])
    committee = [len(people[t.account_id]) for t in truth if t.converts]
    assert sum(committee) / len(committee) >= 2


def test_people_browse_anonymously_before_they_identify(events, truth):
    kind_of = {t.account_id: t.kind for t in truth}
    by_cookie = defaultdict(list)
    for event in events:
        if "anonymousId" in event:
            by_cookie[event["anonymousId"]].append(event)
    anonymous_first = 0
    for cookie_events in by_cookie.values():
        known = ["userId" in e for e in cookie_events]
        # Anonymous until identified, then always the same userId.
        assert known == sorted(known)
        assert len({e["userId"] for e in cookie_events if "userId" in e}) <= 1
        if True in known:
            first = cookie_events[known.index(True)]
            if first["type"] == "identify":
                anonymous_first += known.index(True) > 0
            else:
                # Only existing customers were identified before the window opened.
                assert kind_of[first["context"]["groupId"]] == "customer"
    assert anonymous_first >= 10
    identified = [e for e in events if e["type"] == "identify"]
    assert all(e["anonymousId"] and e["userId"] for e in identified)
    assert any(
        e["traits"]["email"].split("@")[1] in {"gmail.com", "outlook.com"} for e in identified
    )
    assert all(
        e["context"]["traits"]["email"] for e in events if "userId" in e and e["type"] != "group"
    )


def test_customers_users_log_in_with_their_traits_and_their_company(events, truth):
    customers = {t.account_id for t in truth if t.kind == "customer"}
    first_web: dict[str, dict] = {}
    groups = set()
    for event in events:
        account = event["context"]["groupId"]
        if account not in customers:
            continue
        if event["type"] == "group":
            groups.add(account)
            assert event["traits"]["industry"]
            assert event["traits"]["employees"]
        if "anonymousId" in event:
            first_web.setdefault(event["userId"], event)
    assert len(first_web) >= 10
    # Each user's first web event is the login's identify, with who they are.
    for event in first_web.values():
        assert event["type"] == "identify"
        assert {"email", "title", "role", "seniority"} <= set(event["traits"])
    assert {e["context"]["groupId"] for e in first_web.values()} <= groups


def test_volume_for_a_thousand_accounts_is_in_the_expected_range():
    n = sum(1 for _ in simulate(SimulationConfig(accounts=1000, days=90, seed=5)))
    assert 20_000 <= n <= 60_000


def test_truth_of_an_account_does_not_depend_on_how_many_are_simulated(truth):
    fewer = ground_truth(dataclasses.replace(CONFIG, accounts=50))
    assert fewer == truth[:50]


def test_start_sets_the_clock_and_naive_means_utc():
    start = datetime(2025, 3, 1, 12, 0)
    config = SimulationConfig(accounts=30, days=10, seed=1, start=start)
    assert config.start == start.replace(tzinfo=UTC)
    events = list(simulate(config))
    assert events
    assert events[0]["timestamp"] >= "2025-03-01T12:00:00.000Z"
    assert events[-1]["timestamp"] < "2025-03-11T12:00:00.000Z"
    assert ground_truth(config)[0].stages[0][0] == "2025-03-01T12:00:00.000Z"


@pytest.mark.parametrize(
    "kwargs", [{"accounts": -1}, {"days": 0}, {"days": -3.0}, {"buyer_share": 1.5}]
)
def test_bad_configuration_is_refused(kwargs):
    with pytest.raises(ValueError, match="must be"):
        SimulationConfig(**kwargs)


def test_no_accounts_no_events():
    config = SimulationConfig(accounts=0)
    assert list(simulate(config)) == []
    assert ground_truth(config) == []


def test_write_jsonl_round_trips(tmp_path):
    config = SimulationConfig(accounts=60, days=30, seed=9)
    events_path, truth_path = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    n = write_jsonl(config, events_path, truth_path)
    lines = events_path.read_bytes().splitlines()
    assert n == len(lines) > 0
    assert [orjson.loads(line) for line in lines] == list(simulate(config))
    truth_rows = [orjson.loads(line) for line in truth_path.read_bytes().splitlines()]
    expected = [dataclasses.asdict(t) for t in ground_truth(config)]
    for row in expected:
        row["stages"] = [list(stage) for stage in row["stages"]]
    assert truth_rows == expected


def test_reveal_share_hides_the_account_of_unidentified_visitors_only():
    from intent_stream.simulate import SimulationConfig, simulate

    full = list(simulate(SimulationConfig(accounts=40, days=20, seed=5)))
    half = list(simulate(SimulationConfig(accounts=40, days=20, seed=5, reveal_share=0.5)))
    assert len(full) == len(half)  # the random stream is untouched
    hidden = [e for e in half if "groupId" not in e["context"]]
    assert hidden
    assert all("userId" not in e and e["type"] != "group" for e in hidden)
    cookies = {e["anonymousId"] for e in hidden}
    visible = {e["anonymousId"] for e in half if "anonymousId" in e and "userId" not in e} - cookies
    assert visible  # chosen per cookie: some visitors stay revealed
