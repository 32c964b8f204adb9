"""The Redis read model writes snapshots and survives an unreachable Redis."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from intent_stream.embedded import free_port
from intent_stream.metrics import Metrics
from intent_stream.readmodel import RedisReadModel, account_key, by_score_key

pytestmark = pytest.mark.integration


def test_snapshots_are_kept_while_redis_is_down_and_written_when_it_is_back(endpoints):
    prefix = f"rm:{uuid.uuid4().hex[:8]}:"
    metrics = Metrics(CollectorRegistry())

    async def scenario() -> None:
        dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
        model = RedisReadModel(dead, prefix=prefix, metrics=metrics, clock=lambda: 0.0)
        model.update({"a": {"intent_score": 10.0}, "b": {"intent_score": 20.0}})
        assert await model.flush() == 0
        model.update({"a": {"intent_score": 30.0}})  # newer snapshot replaces the pending one
        assert model.pending == 2
        await dead.aclose()
        live = aioredis.from_url(endpoints.redis_url)
        model.client = live
        model._retry_at = 0.0  # skip the back-off for the test's sake
        assert await model.flush() == 2
        assert model.pending == 0
        await live.aclose()

    asyncio.run(scenario())
    client = redis.Redis.from_url(endpoints.redis_url)
    try:
        assert orjson.loads(client.get(account_key(prefix, "a")))["intent_score"] == 30.0
        assert client.zrevrange(by_score_key(prefix), 0, -1) == [b"a", b"b"]
    finally:
        client.close()
    assert metrics.redis_errors._value.get() == 1
    assert metrics.redis_writes._value.get() == 2
