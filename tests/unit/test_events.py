from __future__ import annotations

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from intent_stream.events import (
    MAX_RECORD_BYTES,
    Rejected,
    _check_fields,
    _plain,
    check_message,
    checked_event_time,
    decode_record,
    event_time,
    parse_event,
)


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
    assert decode_record(orjson.dumps({"batch": [one], "src": [2, 9]})) == ([one], [(2, 9, 1)])
    runs = {"batch": [one, one, one], "src": [[2, 9, 2], [0, 4, 1]]}
    assert decode_record(orjson.dumps(runs)) == ([one, one, one], [(2, 9, 2), (0, 4, 1)])


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
        (b'{"batch": [{}], "src": [[0, 1, 2]]}', "invalid_batch"),  # runs miss the batch
        (b'{"batch": [{}], "src": [[0, 1, 1], [0, 2, 0]]}', "invalid_batch"),
        (b'{"batch": [{}], "src": [[0, true, 1]]}', "invalid_batch"),
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


_ids = st.one_of(
    st.none(),
    st.sampled_from(["", "u", "x" * 256, "x" * 257]),
    st.text(max_size=3),
    st.integers(min_value=-5, max_value=5),
    st.booleans(),
    st.lists(st.integers(), max_size=1),
)
_stamps = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.000+02:00",
            "2026-01-01T00:00:00.000",
            "2026-02-30T00:00:00.000Z",
            "1999-12-31T23:59:59.999Z",
            "2099-01-01T00:00:00.000Z",
            "yesterday",
            "",
        ]
    ),
    st.integers(min_value=-1, max_value=4_102_444_800_000),
    st.floats(allow_nan=True),
    st.booleans(),
)
_objects = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["groupId", "email", "x"]), _ids, max_size=2),
    st.lists(st.integers(), max_size=1),
    st.text(max_size=2),
)
_fields = {
    "type": st.sampled_from(["page", "track", "identify", "group", "alias", "screen", "x", 3]),
    "userId": _ids,
    "anonymousId": _ids,
    "messageId": _ids,
    "event": st.one_of(_ids, st.sampled_from(["e" * 200, "e" * 201])),
    "groupId": _ids,
    "previousId": _ids,
    "timestamp": _stamps,
    "originalTimestamp": _stamps,
    "sentAt": _stamps,
    "receivedAt": _stamps,
    "context": _objects,
    "properties": _objects,
    "traits": _objects,
    "integrations": _objects,
    "blob": st.sampled_from(["", "y" * 33_000]),
}


@st.composite
def _tracker_messages(draw):
    """What trackers send (one valid message of each type), with a few fields changed."""
    kind = draw(st.sampled_from(["page", "track", "identify", "group", "alias", "screen"]))
    message = {
        "type": kind,
        "messageId": "m-1",
        "anonymousId": "c-1",
        "userId": "u-1",
        "event": "Demo Requested",
        "groupId": "acme.com",
        "previousId": "c-0",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "context": {"groupId": "acme.com", "page": {"path": "/"}},
        "properties": {"path": "/"},
        "traits": {"email": "ann@acme.com"},
    }
    for name in draw(st.lists(st.sampled_from(sorted(_fields)), max_size=3, unique=True)):
        if draw(st.booleans()):
            message.pop(name, None)
        else:
            message[name] = draw(_fields[name])
    return message


messages = st.one_of(
    _tracker_messages(),
    st.fixed_dictionaries({}, optional=_fields),
    st.lists(st.integers(), max_size=1),
    st.text(max_size=3),
)


def _outcome(call):
    try:
        return call()
    except Rejected as exc:
        return (exc.reason, exc.detail, exc.field)


@settings(max_examples=600, deadline=None)
@given(messages, st.booleans(), st.sampled_from([0.0, 86_400.0]))
@example(  # found by this test: an integer JSON cannot carry crashed the size check
    {"type": "page", "anonymousId": [-(2**63) - 1], "timestamp": "2026-01-01T00:00:00Z"},
    True,
    0.0,
)
def test_checked_event_time_agrees_with_check_message_then_event_time(message, size, skew):
    # checked_event_time has a fast path for the common shape; the rule-by-rule functions
    # are the reference: the same body and time, or the same rejection.
    received = 1_767_225_600.0
    expected = _outcome(
        lambda: (
            check_message(message, check_size=size),
            event_time(message, received_at=received, max_skew=skew),
        )
    )
    got = _outcome(
        lambda: checked_event_time(message, received_at=received, max_skew=skew, check_size=size)
    )
    assert repr(got) == repr(expected)
    if _plain(message):
        assert _check_fields(message) is message


def test_checked_event_time_agrees_with_the_rules_at_every_field_boundary():
    received = 1_767_225_600.0
    values = ["", "x", "x" * 200, "x" * 201, "x" * 256, "x" * 257, 5, True, None, [1], {}]
    stamps = ["2026-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2026-01-03T00:00:00Z", "x", 5]
    for kind in ["page", "track", "identify", "group", "alias", "screen"]:
        base = {
            "type": kind,
            "userId": "u-1",
            "event": "Demo Requested",
            "groupId": "acme.com",
            "previousId": "c-0",
            "timestamp": "2026-01-01T00:00:00.000Z",
        }
        changes = [(name, v) for name in _ID_FIELDS for v in values]
        changes += [(name, s) for name in ("timestamp", "sentAt", "receivedAt") for s in stamps]
        changes += [(name, v) for name in ("context", "properties", "traits") for v in ([], "x")]
        for name, value in changes:
            message = dict(base, **{name: value})
            if name == "anonymousId":
                del message["userId"]
            if name == "context.groupId":
                del message[name]
                message["context"] = {"groupId": value}
            expected = _outcome(
                lambda m=message: (check_message(m), event_time(m, received_at=received))
            )
            got = _outcome(lambda m=message: checked_event_time(m, received_at=received))
            assert repr(got) == repr(expected), (kind, name, value)


_ID_FIELDS = ["userId", "anonymousId", "messageId", "event", "groupId", "previousId"]
_ID_FIELDS.append("context.groupId")


def test_a_value_json_cannot_carry_is_rejected_not_raised():
    # What a Python caller (the client library) can hand over; orjson.loads never makes one.
    for value in (2**64, -(2**63) - 1, {1, 2}, object()):
        body = {
            "type": "track",
            "userId": "u1",
            "event": "Demo Requested",
            "properties": {"n": value},
        }
        with pytest.raises(Rejected) as info:
            check_message(body, check_size=True)
        assert info.value.reason == "invalid_json"
        assert info.value.field == "event"


#: Times no date can be made of, or that are a unit mistake (micro- or nanoseconds).
ABSURD_TIMES = [
    1e300,
    18446744073709551615,
    1_767_225_600_000_000,
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59Z",
    "1999-12-31T23:59:59Z",
]


@pytest.mark.parametrize("stamp", ABSURD_TIMES)
def test_the_scorer_rejects_times_outside_2000_to_3000(stamp):
    # Records written straight to the account topic skip ingest's checks: the scorer's own
    # must keep an event time that no date can be made of out of the account's state.
    with pytest.raises(Rejected) as caught:
        parse_event(_event(timestamp=stamp))
    assert caught.value.reason == "bad_timestamp"
    assert caught.value.field == "timestamp"


@pytest.mark.parametrize("stamp", ABSURD_TIMES)
@pytest.mark.parametrize("max_skew", [0.0, 86_400.0])
def test_ingest_rejects_times_outside_2000_to_3000_whatever_the_skew_allowed(stamp, max_skew):
    with pytest.raises(Rejected) as caught:
        checked_event_time(_event(timestamp=stamp), received_at=1.8e9, max_skew=max_skew)
    assert caught.value.reason == "bad_timestamp"
