"""The topic schemas in intent_stream/schemas agree with the code that writes and reads records.

Every corpus here comes from the engine itself (the simulator, the ingest processor, the
scorer, the identity graph), and the hypothesis properties compare the schemas with
``check_message`` / ``parse_event`` on generated Segment-ish messages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from intent_stream.events import Rejected, check_message, decode_record, parse_event
from intent_stream.identity import IdentityGraph, Pseudonymiser
from intent_stream.ingest import ForwardBatcher, IngestProcessor
from intent_stream.pipeline import AccountProcessor, iso
from intent_stream.schemas import load_schema, schema_names
from intent_stream.scoring import HotLeadPolicy, IntentModel
from intent_stream.settings import Settings
from intent_stream.simulate import SimulationConfig, simulate
from intent_stream.topics import topic_specs

MESSAGE = "segment-message.v1.json"
RAW = "raw-record.v1.json"
ACCOUNT = "account-events.v1.json"
ALERT = "sales-alert.v1.json"
EDGE = "identity-edge.v1.json"
T0 = 1_795_000_000.0
T0_MS = int(T0 * 1000)  # the same time in epoch milliseconds


@cache
def _registry() -> Registry:
    docs = [load_schema(name) for name in schema_names()]
    return Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name), registry=_registry())


def _valid(name: str, doc: object) -> bool:
    return _validator(name).is_valid(doc)


def _assert_valid(name: str, doc: object) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator(name).iter_errors(doc)]
    assert not errors, f"{name} rejects {doc!r}: {errors}"


def _accepts(check, doc) -> bool:
    try:
        check(doc)
    except Rejected:
        return False
    return True


def _chunks(items, size):
    items = list(items)
    return [items[i : i + size] for i in range(0, len(items), size)]


@cache
def _simulated() -> tuple[dict, ...]:
    return tuple(simulate(SimulationConfig(accounts=30, days=20, seed=1)))


# -- the schemas themselves ---------------------------------------------------------------


def test_every_schema_is_a_valid_draft_2020_12_schema_with_id_title_and_description():
    names = schema_names()
    assert {MESSAGE, RAW, ACCOUNT, ALERT, EDGE} <= set(names)
    for name in names:
        doc = load_schema(name)
        Draft202012Validator.check_schema(doc)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["$id"].endswith(f"/schemas/{name}")
        assert doc["title"]
        assert doc["description"]
        for example in doc.get("examples", []):
            _assert_valid(name, example)


def test_every_topic_with_a_schema_names_a_shipped_file_and_only_dlqs_and_changelogs_lack_one():
    settings = Settings()
    specs = topic_specs(settings)
    for spec in specs:
        if spec.schema is not None:
            assert spec.schema in schema_names()
            assert load_schema(spec.schema)["description"]
    without = {s.name for s in specs if s.schema is None}
    assert without == {
        settings.dlq_topic,
        settings.alerts_dlq_topic,
        f"{settings.app_id}-account-state-changelog",
        f"{settings.app_id}-pending-visitors-changelog",
    }
    # Every shipped schema is some topic's, and the DLQ specs say why they have none.
    assert {s.schema for s in specs} - {None} | {MESSAGE} == set(schema_names())
    for spec in specs:
        if spec.name in (settings.dlq_topic, settings.alerts_dlq_topic):
            assert "unchanged" in spec.value
            assert "schema" in spec.value


def test_load_schema_refuses_unknown_names():
    with pytest.raises(FileNotFoundError, match="no schema named"):
        load_schema("../settings.py")


# -- agreement with what the engine writes ------------------------------------------------


def test_simulated_events_are_segment_messages_and_raw_records():
    events = list(_simulated())
    assert len(events) > 200
    assert {e["type"] for e in events} >= {"identify", "track", "page", "group"}
    for event in events:
        check_message(event)  # the simulator writes what ingest accepts...
        _assert_valid(MESSAGE, event)  # ...and so does the schema
        _assert_valid(RAW, event)
    for chunk in _chunks(events, 50):
        _assert_valid(RAW, list(chunk))
        _assert_valid(RAW, {"batch": list(chunk), "sentAt": chunk[-1]["timestamp"]})
        _assert_valid(RAW, {"batch": list(chunk), "context": {"library": {"name": "x"}}})


@pytest.mark.parametrize("key", [b"", b"k"], ids=["plain", "pseudonymised"])
def test_records_the_ingest_processor_forwards_are_account_events(key):
    proc = IngestProcessor(graph=IdentityGraph(), pseudonymiser=Pseudonymiser(key), partitions=4)
    pending: dict = {}
    forwarded = 0
    # What agents/ingest.py writes: the forwards of raw records taken together, gathered
    # into one record per partition with the runs of raw records they came from.
    batcher = ForwardBatcher(max_bytes=64 * 1024)
    records = []
    for offset, chunk in enumerate(_chunks(_simulated(), 40)):
        value = orjson.dumps({"batch": list(chunk)})
        received = max(m["timestamp"] for m in chunk)
        checked = proc.check(value, received_at=datetime.fromisoformat(received).timestamp())
        assert checked.dead_letters == []
        result = proc.route(checked.messages, pending=pending, partition=1, offset=offset)
        records += batcher.add(1, offset, result.forwards)
        if offset % 5 == 4:
            records += batcher.drain()
    records += batcher.drain()
    for record in records:
        _assert_valid(ACCOUNT, orjson.loads(record.value))
        events, src = decode_record(record.value)
        assert src is not None
        assert sum(n for _, _, n in src) == len(events) == record.events
        forwarded += len(events)
    assert any(src and len(src) > 1 for _, src in map(decode_record, (r.value for r in records)))
    assert forwarded > len(_simulated()) // 2


def test_records_written_directly_to_the_account_topic_need_an_account_and_a_time():
    event = {
        "type": "page",
        "userId": "p1",
        "timestamp": iso(T0),
        "context": {"groupId": "acme.com"},
        "properties": {"path": "/pricing"},
    }
    group = {"type": "group", "userId": "p1", "groupId": "acme.com", "originalTimestamp": T0_MS}
    for record in (event, [event, group], {"batch": [event, group]}):
        _assert_valid(ACCOUNT, record)
        events, _ = decode_record(orjson.dumps(record))
        assert all(_accepts(parse_event, e) for e in events)
    no_account = {**event, "context": {}}
    no_time = {k: v for k, v in event.items() if k != "timestamp"}
    null_time = {**event, "timestamp": None, "originalTimestamp": iso(T0)}
    # Times outside 2000-2999 (seconds or microseconds taken for milliseconds, usually).
    out_of_range = [{**event, "timestamp": t} for t in (1, T0, T0_MS * 1000, "1999-12-31")]
    for bad in (no_account, no_time, null_time, *out_of_range):
        assert not _accepts(parse_event, bad)
        assert not _valid(ACCOUNT, bad)
        assert not _valid(ACCOUNT, {"batch": [event, bad]})
    for bad in (no_account, no_time, null_time):
        assert _valid(RAW, bad)  # the raw topic needs neither: ingest resolves the account
    # A forwarded batch carries src and normalised messages; a bad src is refused by both.
    for src in ([0], [[0, 1]], [[0, 1, 0]], [[0, 1, 1], 3]):
        assert not _valid(ACCOUNT, {"src": src, "batch": [event]})
        assert not _accepts(decode_record, orjson.dumps({"src": src, "batch": [event]}))
    normalised = {**event, "receivedAt": iso(T0)}
    for src in ([0, 1], [[0, 1, 1]]):
        assert _valid(ACCOUNT, {"src": src, "batch": [normalised]})


def _hot(account, t0):
    events = [
        {
            "type": "page",
            "userId": f"p{i}",
            "timestamp": iso(t0 + i),
            "context": {"groupId": account},
            "properties": {"path": "/pricing"},
        }
        for i in range(6)
    ]
    for j, name in enumerate(["Demo Requested", "Trial Started"]):
        events.append(
            {
                "type": "track",
                "event": name,
                "userId": "p0",
                "timestamp": iso(t0 + 10 + j),
                "context": {"groupId": account},
            }
        )
    return events


def test_alerts_the_scorer_writes_are_sales_alerts():
    proc = AccountProcessor(
        model=IntentModel(), policy=HotLeadPolicy(enter=70, exit=50, cooldown_s=86400)
    )
    table: dict = {}
    later = T0 + 61 * 86400
    records = [_hot("acme.com", T0), _hot("acme.com", T0 + 60 * 86400)[:1], _hot("acme.com", later)]
    alerts = []
    for offset, events in enumerate(records):
        _assert_valid(ACCOUNT, events)
        result = proc.process(table, value=orjson.dumps(events), partition=0, offset=offset)
        alerts += [orjson.loads(a.value) for a in result.alerts]
    assert [a["episode"] for a in alerts] == [1, 2]
    assert alerts[0]["since_last_alert"] is None
    assert alerts[1]["since_last_alert"]["alert_id"] == alerts[0]["alert_id"]
    declared = load_schema(ALERT)["properties"]
    for alert in alerts:
        _assert_valid(ALERT, alert)
        assert set(alert) == set(declared)  # every field the scorer writes is in the schema
    assert not _valid(ALERT, {**alerts[1], "since_last_alert": {"alert_id": "x"}})
    assert not _valid(ALERT, {k: v for k, v in alerts[0].items() if k != "since_last_alert"})


def test_identity_edges_the_graph_learns_are_identity_edges():
    graph = IdentityGraph()
    edges = []
    for event in _simulated():
        edges += graph.observe(event, ts=datetime.fromisoformat(event["timestamp"]).timestamp())
    edges += graph.observe(
        {"type": "alias", "previousId": "old-id", "userId": "u-new", "traits": {}}, ts=T0
    )
    edges += graph.forget(edges[0].node)
    assert {e.kind for e in edges} == {"person", "account"}
    assert any(e.target is None for e in edges)
    for edge in edges:
        _assert_valid(EDGE, orjson.loads(edge.to_bytes()))
    assert not _valid(EDGE, {"kind": "person", "node": "user:u1", "target": "user:u2"} | _VT)
    assert not _valid(EDGE, {"kind": "cookie", "node": "anon:c1", "target": "x"} | _VT)


_VT = {"via": "identify", "ts": 1.0}


# -- agreement with check_message on rejected messages -----------------------------------


@pytest.mark.parametrize(
    "message",
    [
        {"type": "page"},
        {"type": "page", "userId": None, "anonymousId": None},
        {"type": "page", "userId": ""},
        {"type": "page", "userId": "u" * 257},
        {"type": "page", "userId": True},
        {"type": "page", "userId": "", "anonymousId": "a"},
        {"type": "track", "userId": "u1"},
        {"type": "track", "userId": "u1", "event": ""},
        {"type": "track", "userId": "u1", "event": "e" * 201},
        {"type": "group", "userId": "u1"},
        {"type": "group", "userId": "u1", "groupId": None},
        {"type": "alias", "userId": "u1"},
        {"type": "page", "anonymousId": "a", "context": []},
        {"type": "page", "anonymousId": "a", "properties": "x"},
        {"type": "page", "anonymousId": "a", "timestamp": "yesterday"},
        {"type": "page", "anonymousId": "a", "timestamp": -5},
        {"type": "page", "anonymousId": "a", "sentAt": 0},
        {"type": "page", "anonymousId": "a", "messageId": ""},
        {"type": "Page", "anonymousId": "a"},
        {"anonymousId": "a"},
        ["not", "an", "object"],
    ],
)
def test_messages_check_message_rejects_the_schema_rejects(message):
    assert not _accepts(check_message, message)
    assert not _valid(MESSAGE, message)
    assert not _valid(RAW, [message])
    assert not _valid(RAW, {"batch": [{"type": "page", "userId": "u"}, message]})


def test_empty_records_are_rejected_like_decode_record_does():
    for value in ([], {"batch": []}, {"batch": {"type": "page"}}, "page", 3):
        assert not _accepts(decode_record, orjson.dumps(value))
        assert not _valid(RAW, value)
        assert not _valid(ACCOUNT, value)


def test_a_message_whose_type_is_not_a_string_is_rejected():
    # Found by this file: an unhashable type used to raise TypeError and crash the agent.
    message = {"type": ["track"], "userId": "u1", "event": "x"}
    assert not _valid(MESSAGE, message)
    assert not _accepts(check_message, message)
    with pytest.raises(Rejected):
        parse_event(message)


# -- properties: the schemas say what check_message and parse_event say --------------------

_TYPES = ["identify", "track", "page", "screen", "group", "alias"]
_junk = st.one_of(
    st.none(),
    st.booleans(),
    # Not 3.0: JSON Schema counts an integral float as an integer (see the schema's description).
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.lists(st.integers(-1000, 1000), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(-1000, 1000), max_size=2),
)
_ids = st.one_of(
    st.text(max_size=4),
    st.text(min_size=250, max_size=260),
    st.integers(min_value=-(10**12), max_value=10**12),
    _junk,
)
_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_iso = st.one_of(
    _datetimes.map(lambda d: d.isoformat()),
    _datetimes.map(lambda d: iso(d.timestamp())),
    _datetimes.map(lambda d: d.replace(tzinfo=None).isoformat(timespec="seconds")),
    _datetimes.map(lambda d: d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+05:30")),
    _datetimes.map(lambda d: d.date().isoformat()),
)
_times = st.one_of(
    _iso,
    st.sampled_from([0, 0.0, -1, 0.5, 1]),
    # strings that are not ISO-8601 and do not start with a year (see the schema's description)
    st.text(max_size=6).filter(lambda s: not s[:1].isdigit()),
    st.integers(min_value=-5, max_value=4_102_444_800_000),
    st.floats(min_value=-1.0, max_value=4e12, allow_nan=False),
    _junk,
)
_objects = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "groupId": st.one_of(st.sampled_from(["acme.com", ""]), _ids),
            "traits": st.one_of(st.just({"email": "ann@acme.com"}), _junk),
            "page": st.just({"path": "/pricing"}),
        },
    ),
    _junk,
    st.text(max_size=2),
)
_good_ids = st.one_of(
    st.text(min_size=1, max_size=8),
    st.text(min_size=255, max_size=256),
    st.integers(min_value=-(10**12), max_value=10**12),
)
_good_times = st.one_of(_iso, st.integers(min_value=1, max_value=4_102_444_800_000))
_good_context = st.fixed_dictionaries(
    {},
    optional={
        "groupId": st.one_of(st.just("acme.com"), st.text(min_size=1, max_size=8)),
        "traits": st.just({"email": "ann@acme.com"}),
        "page": st.just({"path": "/pricing"}),
    },
)
#: What a fault may put in each field (or the field is removed).
_FAULTS = {
    # orjson encodes 64-bit integers only: a bigger one would fail the test, not the code.
    "type": st.one_of(
        st.sampled_from(["Track", "", "batch"]),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.none(),
    ),
    "userId": _ids,
    "anonymousId": _ids,
    "messageId": _ids,
    "event": st.one_of(st.sampled_from(["", "e" * 200, "e" * 201]), st.text(max_size=2), _junk),
    "groupId": _ids,
    "previousId": _ids,
    "timestamp": _times,
    "originalTimestamp": _times,
    "sentAt": _times,
    "receivedAt": _times,
    "context": _objects,
    "properties": _objects,
    "traits": _objects,
    "integrations": _objects,
}
_NAMES = ["e" * 200, "e" * 201]


@st.composite
def _messages(draw):
    """A valid Segment message of a random type, then up to three faults: a field removed,
    set to null or replaced by a value of the wrong type, length or shape (which may or may
    not be valid)."""
    kind = draw(st.sampled_from(_TYPES))
    message = {"type": kind}
    who = draw(st.sampled_from(["userId", "anonymousId", "both"]))
    for name in ("userId", "anonymousId"):
        if who in (name, "both"):
            message[name] = draw(_good_ids)
    required = {"track": "event", "group": "groupId", "alias": "previousId"}.get(kind)
    if required == "event":
        # Names at the length limit and one past it (a fault of its own).
        message["event"] = draw(st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(_NAMES)))
    elif required is not None:
        message[required] = draw(_good_ids)
    optional = {
        "messageId": _good_ids,
        "timestamp": _good_times,
        "originalTimestamp": _good_times,
        "sentAt": _good_times,
        "context": _good_context,
        "properties": st.just({"path": "/pricing"}),
    }
    for name, values in optional.items():
        if draw(st.booleans()):
            message[name] = draw(values)
    for name in draw(st.lists(st.sampled_from(sorted(_FAULTS)), max_size=3, unique=True)):
        fault = draw(st.sampled_from(["remove", "null", "replace"]))
        if fault == "remove":
            message.pop(name, None)
        else:
            message[name] = None if fault == "null" else draw(_FAULTS[name])
    return message


# Ids of 250-260 characters make generation slow; they are the point (the 256 limit).
_settings = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(_messages())
def test_the_message_schema_accepts_exactly_what_check_message_accepts(message):
    # The generators avoid the places the schema's description says it is looser (strings
    # starting with a year that fromisoformat refuses, ids like 3.0), so acceptance is equal.
    assert _valid(MESSAGE, message) == _accepts(check_message, message)


@_settings
@given(st.lists(_messages(), min_size=1, max_size=4), st.sampled_from(["array", "batch"]))
def test_the_raw_record_schema_accepts_a_record_iff_ingest_accepts_all_its_messages(
    messages, shape
):
    record = messages if shape == "array" else {"batch": messages}
    events, _ = decode_record(orjson.dumps(record))
    assert _valid(RAW, record) == all(_accepts(check_message, e) for e in events)


@_settings
@given(_messages())
def test_the_account_schema_accepts_a_direct_message_iff_ingest_and_scorer_both_would(message):
    both = _accepts(check_message, message) and _accepts(parse_event, message)
    assert _valid(ACCOUNT, message) == both
    assert _valid(ACCOUNT, [message]) == both


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2100, 1, 1)))
def test_iso_event_times_match_the_forwarded_timestamp_pattern(moment):
    stamp = iso(moment.replace(tzinfo=UTC).timestamp())
    forwarded = {
        "type": "page",
        "userId": "u",
        "timestamp": stamp,
        "receivedAt": stamp,
        "context": {"groupId": "a"},
    }
    _assert_valid(ACCOUNT, {"src": [0, 0], "batch": [forwarded]})
    later = moment + timedelta(hours=1)
    assert not _valid(
        ACCOUNT, {"src": [0, 0], "batch": [{**forwarded, "timestamp": later.isoformat()}]}
    )
