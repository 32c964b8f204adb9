"""The read model's buffering, with a stand-in Redis client (no server)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from intent_stream.metrics import Metrics
from intent_stream.readmodel import RedisReadModel, account_key, by_score_key


class _Pipe:
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.commands: list[tuple[Any, ...]] = []

    def set(self, key: str, value: bytes) -> None:
        self.commands.append(("set", key, value))

    def mset(self, mapping: dict[str, bytes]) -> None:
        # One command on the wire; recorded as the writes it makes.
        self.commands.extend(("set", key, value) for key, value in mapping.items())

    def delete(self, key: str) -> None:
        self.commands.append(("delete", key))

    def zadd(self, key: str, scores: dict[str, float]) -> None:
        self.commands.append(("zadd", key, dict(scores)))

    async def execute(self) -> None:
        if self.client.down:
            raise RedisConnectionError("down")
        self.client.executed.append(self.commands)


class _Client:
    def __init__(self) -> None:
        self.down = True
        self.executed: list[list[tuple[Any, ...]]] = []

    def pipeline(self, *, transaction: bool) -> _Pipe:
        return _Pipe(self)


class _View:
    """A live view, as the scoring agent hands them over (weak-referenceable)."""

    def __init__(self, score: float) -> None:
        self.score = score


def _model(client: _Client, renders: list[float]) -> RedisReadModel:
    def render(view: _View) -> dict[str, Any]:
        renders.append(view.score)
        return {"intent_score": view.score}

    return RedisReadModel(
        client,  # type: ignore[arg-type]
        prefix="t:",
        metrics=Metrics(CollectorRegistry()),
        render=render,
        clock=lambda: 0.0,
    )


def test_a_failed_flush_keeps_the_rendered_snapshots_not_the_views():
    client, renders = _Client(), []
    model = _model(client, renders)
    a, b = _View(10.0), _View(20.0)
    model.update({"a": a, "b": b})
    refs = [weakref.ref(a), weakref.ref(b)]
    del a, b
    assert asyncio.run(model.flush()) == 0
    gc.collect()
    assert [r() for r in refs] == [None, None]  # the views are gone...
    assert model.pending == 2  # ...their snapshots wait
    client.down, model._retry_at = False, 0.0
    assert asyncio.run(model.flush()) == 2
    assert renders == [10.0, 20.0]  # rendered once, not again on the retry
    (commands,) = client.executed
    assert ("set", account_key("t:", "a"), orjson.dumps({"intent_score": 10.0})) in commands
    assert ("zadd", by_score_key("t:"), {"a": 10.0, "b": 20.0}) in commands
    assert model.pending == 0


def test_a_newer_view_replaces_a_snapshot_that_failed():
    client, renders = _Client(), []
    model = _model(client, renders)
    model.update({"a": _View(10.0), "b": _View(20.0)})
    assert asyncio.run(model.flush()) == 0
    model.update({"a": _View(30.0)})
    assert model.pending == 2
    client.down, model._retry_at = False, 0.0
    assert asyncio.run(model.flush()) == 2
    (commands,) = client.executed
    sets = {c[1]: orjson.loads(c[2]) for c in commands if c[0] == "set"}
    assert sets[account_key("t:", "a")] == {"intent_score": 30.0}
    assert sets[account_key("t:", "b")] == {"intent_score": 20.0}
    assert renders == [10.0, 20.0, 30.0]


def test_a_view_that_cannot_be_rendered_costs_only_its_own_account(caplog):
    client = _Client()
    client.down = False

    def render(view: _View) -> dict[str, Any]:
        if view.score < 0:
            raise ValueError("year 10000 is out of range")
        return {"intent_score": view.score}

    model = RedisReadModel(
        client,  # type: ignore[arg-type]
        prefix="t:",
        metrics=Metrics(CollectorRegistry()),
        render=render,
        clock=lambda: 0.0,
    )
    model.update({"a": _View(10.0), "bad": _View(-1.0), "b": _View(20.0)})
    assert asyncio.run(model.flush()) == 2
    (commands,) = client.executed
    assert ("zadd", by_score_key("t:"), {"a": 10.0, "b": 20.0}) in commands
    assert "account bad (ValueError: year 10000 is out of range)" in caplog.text
    assert model.pending == 0
