"""Forgetting a person, as pure logic: control records, the scoring and pending-table parts."""

from __future__ import annotations

import orjson

from intent_stream.identity import IdentityGraph, Pseudonymiser
from intent_stream.pipeline import AccountProcessor
from intent_stream.privacy import (
    ForgetRequest,
    forget_nodes,
    forget_pending,
    is_forget,
    tombstone_keys,
)
from intent_stream.scoring import HotLeadPolicy, IntentModel
from intent_stream.topics import partition_for

from .test_pipeline import _ev, _processor

PARTITIONS = 4


def _accounts_in_partitions(n: int) -> dict[int, str]:
    """One account id per partition, found by hashing candidates."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < n:
        account = f"acct-{i}.example"
        found.setdefault(partition_for(account, n), account)
        i += 1
    return found


def _table_with(person: str) -> tuple[AccountProcessor, dict, dict[int, str]]:
    proc, table = _processor(), {}
    accounts = _accounts_in_partitions(PARTITIONS)
    for p, account in accounts.items():
        events = [_ev(account, person=person, t=1), _ev(account, person="colleague", t=2)]
        proc.process(table, value=orjson.dumps(events), partition=p, offset=1)
    return proc, table, accounts


def test_forget_removes_the_person_only_from_accounts_the_partition_owns():
    proc, table, accounts = _table_with("ann")
    request = ForgetRequest(request_id="r1", nodes=("user:ann",), partitions=PARTITIONS)
    result = proc.process(table, value=request.to_bytes(), partition=1, offset=9)
    assert list(result.snapshots) == [accounts[1]]
    assert result.alerts == []
    assert result.dead_letters == []
    assert "ann" not in table[accounts[1]]["signals"]["p"]
    assert "colleague" in table[accounts[1]]["signals"]["p"]
    assert result.snapshots[accounts[1]].features["people"] == 1.0
    for p in (0, 2, 3):  # other partitions' accounts are untouched until their turn
        assert "ann" in table[accounts[p]]["signals"]["p"]
    for p in range(PARTITIONS):
        proc.process(table, value=request.to_bytes(), partition=p, offset=9)
    assert "ann" not in orjson.dumps(table).decode()
    # The account's counts and replay guard are kept: forgetting is not an event.
    assert all(state["events"] == 2 for state in table.values())


def test_forget_is_idempotent_and_a_replay_changes_nothing():
    proc, table, accounts = _table_with("ann")
    value = ForgetRequest(request_id="r1", nodes=("user:ann",), partitions=PARTITIONS).to_bytes()
    first = proc.process(table, value=value, partition=2, offset=5)
    before = orjson.dumps(table)
    again = proc.process(table, value=value, partition=2, offset=5)
    assert list(first.snapshots) == [accounts[2]]
    assert again.snapshots == {}
    assert orjson.dumps(table) == before


def test_an_unreadable_control_record_is_a_dead_letter():
    proc, table = _processor(), {}
    result = proc.process(table, value=b'{"forget": {"nodes": 3}}', partition=0, offset=1)
    assert [d.reason for d in result.dead_letters] == ["bad_control"]


def test_a_forget_with_no_partitions_is_a_dead_letter_not_a_crash():
    proc, table, _ = _table_with("ann")
    before = orjson.dumps(table)
    value = b'{"forget": {"id": "r", "nodes": ["user:ann"], "partitions": 0}}'
    result = proc.process(table, value=value, partition=0, offset=9)
    assert [d.reason for d in result.dead_letters] == ["bad_control"]
    assert orjson.dumps(table) == before


def test_events_after_the_forget_are_counted_again():
    proc = AccountProcessor(
        model=IntentModel(), policy=HotLeadPolicy(enter=70, exit=50, cooldown_s=1)
    )
    table: dict = {}
    account = _accounts_in_partitions(1)[0]
    proc.process(table, value=orjson.dumps([_ev(account, person="ann")]), partition=0, offset=1)
    request = ForgetRequest(request_id="r", nodes=("user:ann",), partitions=1)
    proc.process(table, value=request.to_bytes(), partition=0, offset=2)
    proc.process(table, value=orjson.dumps([_ev(account, person="bob")]), partition=0, offset=3)
    assert sorted(table[account]["signals"]["p"]) == ["bob"]


def test_forget_nodes_cover_pseudonymised_ids_and_linked_cookies():
    pseudo = Pseudonymiser(b"k")
    graph = IdentityGraph()
    hashed = pseudo.person("ann")
    graph.observe({"type": "identify", "anonymousId": "c1", "userId": hashed}, ts=1.0)
    nodes = forget_nodes(graph, "ann", pseudo)
    assert f"user:{hashed}" in nodes
    assert "anon:c1" in nodes
    assert "user:ann" in nodes
    assert set(tombstone_keys(["anon:c1"])) == {"person|anon:c1", "account|anon:c1"}


def test_forget_pending_drops_only_this_partitions_entries():
    pending = {
        "anon:c1": {"off": [0, 4], "events": [[1.0, {"anonymousId": "c1"}]]},
        "anon:c2": {"off": [1, 4], "events": [[1.0, {"anonymousId": "c2"}]]},
        "anon:other": {"off": [0, 5], "events": [[1.0, {}]]},
    }
    assert forget_pending(pending, ["anon:c1", "anon:c2"], partition=0) == 1
    assert sorted(pending) == ["anon:c2", "anon:other"]
    assert forget_pending(pending, ["anon:c1", "anon:c2"], partition=1) == 1
    assert sorted(pending) == ["anon:other"]


def test_control_records_are_never_mistaken_for_events():
    request = ForgetRequest(request_id="r", nodes=("anon:x",), partitions=8)
    assert is_forget(request.to_bytes())
    assert not is_forget(None)
    assert not is_forget(orjson.dumps({"type": "track", "forget": True}))
    assert ForgetRequest.from_bytes(b'{"forget": "nope"}') is None
    # A partition count that routes nothing (or divides by zero) is not a request either.
    for partitions in (0, -3, True, 2.5, "4"):
        body = {"forget": {"id": "r", "nodes": ["user:u1"], "partitions": partitions}}
        assert ForgetRequest.from_bytes(orjson.dumps(body)) is None, partitions
