"""IntentClient against the embedded broker: routing, batching, linger, validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from intent_stream.client import IntentClient, InvalidMessage, visitor_key
from intent_stream.topics import ensure_topics, partition_for

from .conftest import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def raw_settings(settings):
    tag = uuid.uuid4().hex[:8]
    mine = settings.replace(raw_topic=f"it.{tag}.raw.v1", identity_topic=f"it.{tag}.identity.v1")
    ensure_topics(mine)
    return mine


def _messages(endpoints, topic, count, timeout=20):
    found: list = []

    def completes(record) -> bool:
        found.extend((record, m) for m in orjson.loads(record.value)["batch"])
        return len(found) >= count

    read_topic(endpoints, topic, count=1, timeout=timeout, predicate=completes)
    return found


def test_every_call_arrives_batched_per_partition(raw_settings, endpoints):
    s = raw_settings
    # A linger longer than the run: only close() flushes, whatever the host's speed (at the
    # default 0.1 s a slow host flushed a partition mid-run and wrote it two records).
    with IntentClient(
        bootstrap_servers=s.kafka,
        topic=s.raw_topic,
        partitions=s.partitions,
        batch_size=500,
        linger=60.0,
    ) as client:
        ids = [
            client.identify(
                user_id="u-1", anonymous_id="a-1", traits={"email": "ada@acme.example"}
            ),
            client.track(anonymous_id="a-1", event="Demo Requested", properties={"plan": "team"}),
            client.page(anonymous_id="a-2", name="Pricing", properties={"path": "/pricing"}),
            client.screen(user_id=7, name="Dashboard"),
            client.group(user_id="u-1", group_id="acme.example", traits={"employees": 120}),
            client.alias(previous_id="a-1", user_id="u-1"),
            client.track(
                user_id="u-1",
                event="Trial Started",
                timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                context={"groupId": "acme.example"},
            ),
        ]
        for i in range(60):
            client.page(anonymous_id=f"bulk-{i % 12}", properties={"n": i})
    found = _messages(endpoints, s.raw_topic, count=len(ids) + 60)
    by_id = {m["messageId"]: m for _, m in found}
    assert set(ids) <= set(by_id)
    assert by_id[ids[6]]["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert by_id[ids[4]]["groupId"] == "acme.example"
    assert by_id[ids[3]]["userId"] == 7
    records = {(r.partition, r.offset): r for r, _ in found}
    # Batched: one record per partition here (the whole run fits one batch and one flush).
    assert len(records) == len({p for p, _ in records})
    for (partition, _), record in records.items():
        batch = orjson.loads(record.value)["batch"]
        assert {partition_for(visitor_key(m), s.partitions) for m in batch} == {partition}
        assert record.key == visitor_key(batch[0]).encode()


def test_batch_size_and_linger_send_without_an_explicit_flush(raw_settings, endpoints):
    s = raw_settings
    client = IntentClient(
        bootstrap_servers=s.kafka,
        topic=s.raw_topic,
        partitions=s.partitions,
        batch_size=5,
        linger=0.5,  # long enough that the first five calls fill a batch on a slow host
    )
    try:
        for i in range(7):  # one full batch of 5, then 2 that only the linger timer sends
            client.track(anonymous_id="same-visitor", event="Feature Used", properties={"n": i})
        found = _messages(endpoints, s.raw_topic, count=7)
        assert [m["properties"]["n"] for _, m in found] == list(range(7))
        assert [r.offset for r, _ in found] == [found[0][0].offset] * 5 + [found[5][0].offset] * 2
    finally:
        client.close()
    assert client.delivered == 7
    assert client.failed == 0


def test_partitions_are_read_from_the_broker_when_not_given(raw_settings):
    with IntentClient(bootstrap_servers=raw_settings.kafka, topic=raw_settings.raw_topic) as client:
        assert client.partitions == raw_settings.partitions


def test_an_invalid_message_raises_naming_the_field_and_nothing_is_sent(raw_settings, endpoints):
    s = raw_settings
    with IntentClient(
        bootstrap_servers=s.kafka, topic=s.raw_topic, partitions=s.partitions
    ) as client:
        with pytest.raises(InvalidMessage) as info:
            client.send({"type": "track", "anonymousId": "v", "messageId": "bad"})
        assert info.value.field == "event"
        with pytest.raises(ValueError, match="groupId"):
            client.send({"type": "group", "userId": "u", "messageId": "bad-2"})
        good = client.track(anonymous_id="v", event="Email Clicked")
    ((_, message),) = _messages(endpoints, s.raw_topic, count=1)
    assert message["messageId"] == good
