from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from intent_stream.client import (
    InvalidMessage,
    prepare_message,
    route_records,
    visitor_key,
)
from intent_stream.topics import partition_for


def _page(anonymous_id=None, user_id=None, n=0):
    msg = {"type": "page", "properties": {"n": n}}
    if anonymous_id is not None:
        msg["anonymousId"] = anonymous_id
    if user_id is not None:
        msg["userId"] = user_id
    return msg


def test_visitor_key_prefers_the_anonymous_id_and_stringifies():
    assert visitor_key(_page("a1", "u1")) == "a1"
    assert visitor_key(_page(None, "u1")) == "u1"
    assert visitor_key(_page("", 17)) == "17"
    assert visitor_key(_page(None, 17)) == "17"


def test_route_records_one_record_per_partition_with_every_message_in_order():
    messages = [_page(f"v{i % 23}", n=i) for i in range(200)]
    records = route_records(messages, partitions=8)
    partitions = [r.partition for r in records]
    assert len(partitions) == len(set(partitions))
    expected = {partition_for(f"v{i}", 8) for i in range(23)}
    assert set(partitions) == expected
    seen = []
    for record in records:
        batch = orjson.loads(record.value)["batch"]
        assert record.events == len(batch)
        # Every message sits in the partition of its own visitor ...
        assert {partition_for(visitor_key(m), 8) for m in batch} == {record.partition}
        # ... the key is the first message's visitor key ...
        assert record.key == visitor_key(batch[0]).encode()
        # ... and a partition's messages keep their order.
        ns = [m["properties"]["n"] for m in batch]
        assert ns == sorted(ns)
        seen.extend(ns)
    assert sorted(seen) == list(range(200))


def test_route_records_splits_a_partition_group_that_would_be_too_large():
    big = "x" * 1000
    messages = [{**_page("same-visitor", n=i), "context": {"pad": big}} for i in range(50)]
    records = route_records(messages, partitions=4, max_record_bytes=10_000)
    assert len(records) > 1
    assert all(len(r.value) <= 10_000 for r in records)
    assert len({r.partition for r in records}) == 1
    ns = [m["properties"]["n"] for r in records for m in orjson.loads(r.value)["batch"]]
    assert ns == list(range(50))


def test_route_records_single_partition_topic():
    records = route_records([_page("a"), _page("b"), _page(None, "c")], partitions=1)
    assert [(r.partition, r.events) for r in records] == [(0, 3)]


def test_prepare_message_stamps_what_is_missing_and_keeps_the_rest():
    original = {"type": "track", "userId": "u1", "event": "Demo Requested"}
    msg = prepare_message(original, now=1_767_225_600.0)
    assert msg["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert len(msg["messageId"]) == 36
    assert msg["context"]["library"]["name"] == "intent_stream"
    assert "messageId" not in original  # the caller's dict is untouched

    given = {
        "type": "page",
        "anonymousId": "a",
        "messageId": "m-1",
        "originalTimestamp": "2026-01-01T00:00:00Z",
        "context": {"library": {"name": "my-sdk"}, "groupId": "acme.com"},
    }
    msg = prepare_message(given)
    assert msg["messageId"] == "m-1"
    assert "timestamp" not in msg  # originalTimestamp kept for the skew correction
    assert msg["context"] == given["context"]


def test_prepare_message_turns_datetimes_into_iso_utc():
    aware = datetime(2026, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    naive = datetime(2026, 1, 1, 0, 0)
    assert prepare_message({**_page("a"), "timestamp": aware})["timestamp"] == (
        "2026-01-01T00:00:00.000Z"
    )
    assert prepare_message({**_page("a"), "timestamp": naive})["timestamp"] == (
        datetime(2026, 1, 1, tzinfo=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    )


@pytest.mark.parametrize(
    ("message", "reason", "field"),
    [
        ({"type": "track", "userId": "u"}, "bad_field", "event"),
        ({"type": "page"}, "missing_id", "userId"),
        ({"type": "click", "userId": "u"}, "bad_type", "type"),
        ({"type": "group", "userId": "u"}, "bad_field", "groupId"),
        ({"type": "alias", "userId": "u"}, "bad_field", "previousId"),
        ({"type": "page", "userId": "u", "properties": [1]}, "bad_field", "properties"),
        ({"type": "page", "userId": "u", "timestamp": "yesterday"}, "bad_timestamp", "timestamp"),
        ({"type": "page", "userId": "u", "properties": {"x": "y" * 40_000}}, "too_large", "event"),
    ],
)
def test_prepare_message_rejects_with_a_value_error_naming_the_field(message, reason, field):
    with pytest.raises(InvalidMessage) as info:
        prepare_message(message)
    assert isinstance(info.value, ValueError)
    assert (info.value.reason, info.value.field) == (reason, field)
    assert repr(field) in str(info.value)


@pytest.mark.parametrize("message", [[1, 2], 5, "ab", [["type", "page"], ["anonymousId", "a"]]])
def test_prepare_message_rejects_what_is_not_an_object(message):
    # A JSONL line holding an array, a number or a string: a bad line, not a crash of send.
    with pytest.raises(InvalidMessage) as info:
        prepare_message(message)
    assert info.value.reason == "not_an_event"
