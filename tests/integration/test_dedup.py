"""Message de-duplication against a real Redis: retries dropped, replays let through."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from intent_stream.dedup import MessageDeduplicator

pytestmark = pytest.mark.integration


def test_a_retry_is_a_duplicate_but_a_replay_of_the_same_record_is_not(endpoints):
    async def scenario() -> None:
        client = aioredis.from_url(endpoints.redis_url)
        errors: list[int] = []
        dedup = MessageDeduplicator(
            client,
            prefix=f"it:{uuid.uuid4().hex[:8]}:",
            window=60,
            on_error=lambda: errors.append(1),
        )
        try:
            first = await dedup.duplicates(["a", "b", None, "a"], source="0:10")
            assert first == {3}  # a repeat inside the record
            replay = await dedup.duplicates(["a", "b"], source="0:10")
            assert replay == frozenset()  # the same record again, after a crash
            retry = await dedup.duplicates(["c", "b"], source="3:77")
            assert retry == {1}  # b was first carried by another record
            assert errors == []
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_redis_down_lets_messages_through_and_counts_the_failure():
    async def scenario() -> None:
        client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
        errors: list[int] = []
        dedup = MessageDeduplicator(
            client, prefix="x:", window=60, on_error=lambda: errors.append(1)
        )
        try:
            assert await dedup.duplicates(["a", "a"], source="0:1") == {1}
            assert errors == [1]
            # Backing off: no second attempt right away, still only in-record repeats.
            assert await dedup.duplicates(["a"], source="0:2") == frozenset()
            assert errors == [1]
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_records_asked_together_are_answered_as_if_asked_one_after_the_other(endpoints):
    async def scenario() -> None:
        client = aioredis.from_url(endpoints.redis_url)
        dedup = MessageDeduplicator(client, prefix=f"it:{uuid.uuid4().hex[:8]}:", window=60)
        try:
            await dedup.duplicates(["seen"], source="0:1")
            found = await dedup.duplicates_many(
                [
                    (["a", "seen", "a"], "0:2"),  # seen elsewhere, and a repeat inside
                    (["b", "a"], "1:5"),  # a was first carried by 0:2
                    ([None], "1:6"),
                    (["seen"], "0:1"),  # the first record, replayed: not a duplicate
                ]
            )
            assert found == [{1, 2}, {1}, frozenset(), frozenset()]
            # The same records again (a replay of the batch): each is itself.
            again = await dedup.duplicates_many([(["a"], "0:2"), (["b", "a"], "1:5")])
            assert again == [frozenset(), {1}]
        finally:
            await client.aclose()

    asyncio.run(scenario())
