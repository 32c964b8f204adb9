from __future__ import annotations

import orjson
import pytest

from intent_stream.events import MAX_RECORD_BYTES, Rejected, decode_record, parse_event


def _event(**overrides):
    event = {
        "type": "track",
        "event": "Pricing Viewed",
        "userId": "u1",
        "timestamp": "2026-11-20T10:00:00.000Z",
        "context": {"groupId": "acme.com"},
    }
    event.update(overrides)
    return event


def test_a_record_may_hold_one_event_an_array_or_a_segment_batch():
    one = _event()
    assert decode_record(orjson.dumps(one)) == ([one], None)
    assert decode_record(orjson.dumps([one, one])) == ([one, one], None)
    assert decode_record(orjson.dumps({"batch": [one], "sentAt": "x"})) == ([one], None)
    assert decode_record(orjson.dumps({"batch": [one], "src": [2, 9]})) == ([one], (2, 9))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"\xff\xfe not utf8", "invalid_json"),
        (b"{broken", "invalid_json"),
        (b"42", "not_an_event"),
        (b'{"batch": 3}', "invalid_batch"),
        (b'{"batch": [{}], "src": "x"}', "invalid_batch"),
        (b'{"batch": []}', "empty"),
        (b"[]", "empty"),
        (b"[" + b" " * MAX_RECORD_BYTES + b"]", "too_large"),
    ],
)
def test_undecodable_records_are_rejected_with_a_reason(value, reason):
    with pytest.raises(Rejected) as info:
        decode_record(value)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("text", "not_an_event"),
        (_event(type="click"), "bad_type"),
        (_event(userId=None), "missing_id"),
        (_event(userId=["u"]), "bad_field"),
        (_event(userId="x" * 300), "bad_field"),
        (_event(context={}), "missing_account"),
        (_event(timestamp="yesterday"), "bad_timestamp"),
        (_event(timestamp=None), "bad_timestamp"),
        (_event(timestamp=True), "bad_timestamp"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(event, reason):
    with pytest.raises(Rejected) as info:
        parse_event(event)
    assert info.value.reason == reason


def test_anonymous_events_and_group_calls_are_accepted():
    anon = parse_event(_event(userId=None, anonymousId="cookie-1"))
    assert anon.person_id == "cookie-1"
    group = parse_event(
        {"type": "group", "groupId": "acme.com", "userId": "u1", "timestamp": 1767225600000}
    )
    assert group.account_id == "acme.com"
    assert group.ts == 1767225600.0


def test_offset_timestamps_are_converted_to_utc():
    a = parse_event(_event(timestamp="2026-11-20T12:00:00+02:00"))
    b = parse_event(_event(timestamp="2026-11-20T10:00:00Z"))
    assert a.ts == b.ts


def test_an_unhashable_type_or_an_overlong_account_is_rejected_not_raised():
    from intent_stream.events import check_message

    with pytest.raises(Rejected) as info:
        check_message({"type": {"x": 1}, "userId": "u"})
    assert info.value.reason == "bad_type"
    with pytest.raises(Rejected) as info:
        check_message({"type": "page", "userId": "u", "context": {"groupId": "a" * 300}})
    assert info.value.field == "groupId"
