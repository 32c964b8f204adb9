from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from intent_stream.events import decode_record
from intent_stream.identity import IdentityGraph, Pseudonymiser
from intent_stream.ingest import ForwardBatcher, IngestProcessor

T0 = 1_767_225_600.0  # 2026-01-01
DAY = 86400.0


def _processor(**kw) -> IngestProcessor:
    options = {"partitions": 4, "lookback": 7 * DAY, "pending_max": 3, **kw}
    return IngestProcessor(graph=IdentityGraph(), pseudonymiser=Pseudonymiser(b""), **options)


def _page(ts: float, **fields) -> dict:
    return {"type": "page", "timestamp": int(ts * 1000), "properties": {"path": "/x"}, **fields}


def _route(p: IngestProcessor, events: list[dict], pending: dict, offset: int, partition=0):
    checked = p.check(orjson.dumps(events), received_at=T0 + 30 * DAY)
    assert not checked.dead_letters
    return p.route(checked.messages, pending=pending, partition=partition, offset=offset)


def test_event_time_is_normalised_and_emails_lower_cased():
    p = _processor()
    checked = p.check(
        orjson.dumps(
            {
                "type": "identify",
                "userId": 42,
                "originalTimestamp": "2026-01-01T00:00:00Z",
                "sentAt": "2026-01-01T00:01:00Z",
                "traits": {"email": " Ann@ACME.com "},
            }
        ),
        received_at=T0 + 90,
    )
    body = checked.messages[0].body
    assert body["timestamp"] == "2026-01-01T00:00:30.000Z"  # received - (sent - original)
    assert body["userId"] == "42"
    assert body["traits"]["email"] == "ann@acme.com"


def test_person_ids_are_pseudonymised_when_a_key_is_set():
    p = IngestProcessor(graph=IdentityGraph(), pseudonymiser=Pseudonymiser(b"k"), partitions=4)
    checked = p.check(
        orjson.dumps(_page(T0, userId="u1", anonymousId="c1", context={"groupId": "a"})),
        received_at=T0,
    )
    body = checked.messages[0].body
    assert body["userId"] != "u1"
    assert body["anonymousId"] != "c1"
    assert len(body["userId"]) == 32


def test_pending_events_are_released_within_the_lookback_only():
    p = _processor()
    pending: dict = {}
    _route(p, [_page(T0, anonymousId="c1")], pending, 1)
    _route(p, [_page(T0 + 6 * DAY, anonymousId="c1")], pending, 2)
    assert len(pending["anon:c1"]["events"]) == 2
    result = _route(
        p,
        [_page(T0 + 8 * DAY, anonymousId="c1", userId="u1", context={"groupId": "acme"})],
        pending,
        3,
    )
    # The first page is 8 days old at identification: outside the 7-day look-back.
    assert (result.released, result.expired) == (1, 1)
    assert sum(len(v) for v in result.forwards.values()) == 2
    assert pending == {}


def test_a_replayed_record_is_not_pended_twice_and_the_buffer_is_bounded():
    p = _processor()
    pending: dict = {}
    for offset in range(5):
        _route(p, [_page(T0 + offset, anonymousId="c1")], pending, offset)
    replay = _route(p, [_page(T0 + 4, anonymousId="c1")], pending, 4)
    assert replay.skipped == 1
    assert len(pending["anon:c1"]["events"]) == 3  # pending_max


def test_one_visitors_several_events_in_one_record_are_all_pended_and_replay_skips_them():
    p = _processor()
    pending: dict = {}
    record = [_page(T0, anonymousId="c1"), _page(T0 + 1, anonymousId="c1")]
    first = _route(p, record, pending, offset=7)
    assert (first.pended, first.skipped) == (2, 0)  # the second is not taken for a replay
    replay = _route(p, record, pending, offset=7)
    assert (replay.pended, replay.skipped) == (0, 2)
    assert len(pending["anon:c1"]["events"]) == 2


def test_duplicates_are_dropped_and_events_grouped_by_destination_partition():
    p = _processor(partitions=8)
    events = [_page(T0 + i, userId=f"u{i}", context={"groupId": f"acct{i}"}) for i in range(20)]
    checked = p.check(orjson.dumps(events), received_at=T0)
    result = p.route(
        checked.messages, pending={}, partition=0, offset=0, duplicates=frozenset({0, 1})
    )
    assert result.duplicates == 2
    forwarded = [e for batch in result.forwards.values() for e in batch]
    assert len(forwarded) == 18
    from intent_stream.topics import partition_for

    for partition, batch in result.forwards.items():
        assert all(partition_for(e["context"]["groupId"], 8) == partition for e in batch)


def test_sweep_drops_visitors_idle_for_longer_than_the_lookback():
    p = _processor()
    pending: dict = {}
    _route(p, [_page(T0, anonymousId="old")], pending, 1)
    _route(p, [_page(T0 + 10 * DAY, anonymousId="new")], pending, 2)
    assert p.sweep(pending, now=T0 + 10 * DAY, partition=0) == 1
    assert list(pending) == ["anon:new"]


def test_sweep_deletes_only_the_entries_of_its_own_raw_partition():
    # Each entry's tombstone must go to the changelog partition holding it, and entries of a
    # partition another worker took over are not this one's to delete.
    p = _processor()
    pending: dict = {}
    _route(p, [_page(T0, anonymousId="here")], pending, 1, partition=0)
    _route(p, [_page(T0, anonymousId="there")], pending, 1, partition=3)
    assert p.sweep(pending, now=T0 + 10 * DAY, partition=0) == 1
    assert list(pending) == ["anon:there"]
    assert p.sweep(pending, now=T0 + 10 * DAY, partition=3) == 1
    assert pending == {}


ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
segmentish = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["page", "track", "identify", "group", "alias", "screen", "x"]),
        "userId": st.one_of(st.text(max_size=300), ints, json_values),
        "anonymousId": st.one_of(st.text(max_size=5), json_values),
        "event": st.one_of(st.text(max_size=250), json_values),
        "timestamp": st.one_of(ints, st.text(max_size=30), json_values),
        "context": json_values,
        "traits": json_values,
        "groupId": json_values,
        "previousId": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        json_values.map(orjson.dumps),
        st.lists(segmentish, max_size=5).map(orjson.dumps),
        segmentish.map(orjson.dumps),
    )
)
def test_any_bytes_are_either_routed_or_dead_lettered_never_raised(value):
    p = _processor()
    checked = p.check(value, received_at=T0)
    result = p.route(checked.messages, pending={}, partition=0, offset=0)
    assert checked.messages or checked.dead_letters
    assert all(d.reason and d.detail for d in checked.dead_letters)
    routed = sum(len(b) for b in result.forwards.values()) + result.pended
    assert routed == len(checked.messages)


def test_every_email_holder_is_normalised_and_forwarded_events_name_their_account():
    p = IngestProcessor(graph=IdentityGraph(), pseudonymiser=Pseudonymiser(b"k"), partitions=4)
    event = {
        "type": "identify",
        "userId": 7,
        "anonymousId": "c1",
        "timestamp": int(T0 * 1000),
        "traits": {"email": " Ann@ACME.com ", "company": {"id": "acme"}},
        "properties": {"email": "Bob@Acme.com"},
        "context": {"traits": {"email": "CAT@acme.com"}, "page": {"path": "/"}},
    }
    checked = p.check(orjson.dumps(event), received_at=T0)
    body = checked.messages[0].body
    assert list(body) == [*event, "receivedAt"]  # fields keep their order
    assert body["userId"] == Pseudonymiser(b"k").person("7")
    for holder in (body["traits"], body["properties"], body["context"]["traits"]):
        assert holder["email"].endswith("@acme.com")
        assert not holder["email"].startswith(("ann", "bob", "cat"))
    result = p.route(checked.messages, pending={}, partition=0, offset=0)
    (forwarded,) = [e for batch in result.forwards.values() for e in batch]
    assert forwarded["context"] == {
        "traits": body["context"]["traits"],
        "page": {"path": "/"},
        "groupId": "acme",
    }
    assert list(forwarded) == list(body)


# -- gathering forwards (ForwardBatcher) -----------------------------------------------


def _forwarded(account, n):
    return {"type": "page", "context": {"groupId": account}, "n": n}


def test_forwards_of_several_raw_records_become_one_record_per_partition():
    batcher = ForwardBatcher(max_bytes=1 << 20)
    assert batcher.add(0, 5, {1: [_forwarded("a", 1)], 3: [_forwarded("b", 2)]}) == []
    assert batcher.add(2, 9, {1: [_forwarded("c", 3), _forwarded("a", 4)]}) == []
    records = {r.partition: r for r in batcher.drain()}
    assert set(records) == {1, 3}
    events, src = decode_record(records[1].value)
    assert [e["n"] for e in events] == [1, 3, 4]  # in the order they were routed
    assert src == [(0, 5, 1), (2, 9, 2)]
    assert records[1].key == b"a"
    assert records[1].events == 3
    assert decode_record(records[3].value) == ([_forwarded("b", 2)], [(0, 5, 1)])
    assert batcher.drain() == []


def test_a_partition_about_to_pass_max_bytes_goes_out_first():
    one = len(orjson.dumps([_forwarded("a", 0)]))
    batcher = ForwardBatcher(max_bytes=3 * one)
    out = []
    for offset in range(7):
        out += batcher.add(0, offset, {2: [_forwarded("a", offset)]})
    out += batcher.drain()
    assert [r.events for r in out] == [3, 3, 1]
    decoded = [decode_record(r.value) for r in out]
    assert [e["n"] for events, _ in decoded for e in events] == list(range(7))
    assert [o for _, src in decoded for _, o, _ in src] == list(range(7))
    assert all(len(r.value) <= 3 * one + 64 for r in out)
    # One raw record's events larger than max_bytes make a record of their own.
    big = ForwardBatcher(max_bytes=10)
    assert big.add(0, 1, {0: [_forwarded("a", 1)]}) == []
    (first,) = big.add(0, 2, {0: [_forwarded("a", 2)]})
    assert first.events == 1
    assert [r.events for r in big.drain()] == [1]


def test_a_record_timestamp_no_date_can_be_made_of_is_replaced_by_the_clock():
    # The Kafka record's timestamp is whatever its producer set (CreateTime).
    p = _processor()
    checked = p.check(orjson.dumps(_page(T0, anonymousId="a")), received_at=9.2e15)
    assert not checked.dead_letters
    (message,) = checked.messages
    assert message.body["receivedAt"].startswith("20")
