"""The Redis read model: each account's latest score and state, for APIs and people.

The scoring agent never waits on Redis. It hands changed accounts to :class:`RedisReadModel`,
which keeps only the newest snapshot per account and writes them in one pipeline per flush. If
Redis is down, the snapshots stay pending (newer ones replace older ones) and the next flush
retries with back-off, so an outage delays the read model and loses nothing. A flush that
fails keeps what it rendered (each account's JSON, ~1 KB) instead of the live views it rendered
them from (~3 KB of Python objects an account): during a long outage every changed account
waits in memory, and the retries do not render them again.

Keys (``prefix`` defaults to ``intent:``):

- ``{prefix}account:{account_id}`` - JSON snapshot of the account
- ``{prefix}accounts:by_score`` - sorted set of account ids by intent score
- ``{prefix}identity:{node}`` - JSON of what the identity graph knows about a cookie
  (``anon:...``) or person (``user:...``): account, evidence, linked cookies or person
- ``{prefix}model:intent:v1``, ``{prefix}model:fit:v1`` - model checkpoints (versioned
  pickles, see :mod:`intent_stream.scoring.checkpoint`)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from intent_stream.metrics import Metrics
from intent_stream.tables import json_bytes

__all__ = [
    "RedisReadModel",
    "account_key",
    "by_score_key",
    "identity_key",
    "model_key",
    "top_rows",
]

logger = logging.getLogger(__name__)


def account_key(prefix: str, account_id: str) -> str:
    """
    >>> account_key("intent:", "acme.com")
    'intent:account:acme.com'
    """
    return f"{prefix}account:{account_id}"


def by_score_key(prefix: str) -> str:
    return f"{prefix}accounts:by_score"


def model_key(prefix: str, kind: str) -> str:
    """
    >>> model_key("intent:", "intent")
    'intent:model:intent:v1'
    """
    from intent_stream.scoring.checkpoint import CHECKPOINT_VERSION

    return f"{prefix}model:{kind}:v{CHECKPOINT_VERSION}"


def top_rows(
    ranked: list[tuple[Any, float]], snapshots: list[bytes | None]
) -> list[dict[str, Any]]:
    """Rows of the top-accounts table from ``ZREVRANGE ... WITHSCORES`` and the snapshots.

    Accounts whose snapshot is gone are listed with their score only.

    >>> top_rows([(b"acme.com", 81.5)], [b'{"intent_score": 81.5, "fit_score": 62.0}'])
    [{'account_id': 'acme.com', 'intent_score': 81.5, 'fit_score': 62.0, 'fit_band': None, \
'topics': [], 'reasons': [], 'last_event_at': None, 'updated_at': None}]
    """
    rows = []
    for (member, score), raw in zip(ranked, snapshots, strict=True):
        account = member.decode() if isinstance(member, bytes) else str(member)
        snap = orjson.loads(raw) if raw else {}
        rows.append(
            {
                "account_id": account,
                "intent_score": snap.get("intent_score", float(score)),
                "fit_score": snap.get("fit_score"),
                "fit_band": snap.get("fit_band"),
                "topics": snap.get("topics", []),
                "reasons": snap.get("reasons", []),
                "last_event_at": snap.get("last_event_at"),
                "updated_at": snap.get("updated_at"),
            }
        )
    return rows


def identity_key(prefix: str, node: str) -> str:
    """
    >>> identity_key("intent:", "anon:c1")
    'intent:identity:anon:c1'
    """
    return f"{prefix}identity:{node}"


#: Accounts rendered between two yields to the event loop during a flush.
RENDER_SLICE = 50


class RedisReadModel:
    """Buffers account snapshots and flushes them to Redis, retrying with back-off."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        metrics: Metrics,
        render: Callable[[Any], dict[str, Any]] = dict,
        max_backoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.metrics = metrics
        self.render = render
        self.max_backoff = max_backoff
        self.clock = clock
        self._pending: dict[str, Any] = {}
        # Snapshots a failed flush rendered: account id -> (JSON, intent score).
        self._rendered: dict[str, tuple[bytes, float]] = {}
        self._values: dict[str, bytes | None] = {}
        self._failures = 0
        self._retry_at = 0.0
        # Flushes run one at a time (the timer's and the one before each offset commit):
        # two at once could write an older snapshot after a newer one.
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._rendered) + len(self._values)

    def put(self, key: str, value: bytes | None) -> None:
        """Queue a plain key write (None deletes it), flushed with the account snapshots."""
        self._values[key] = value

    def update(self, snapshots: Mapping[str, Any]) -> None:
        """Queue the newest views of changed accounts (rendered by ``render`` when written)."""
        self._pending.update(snapshots)
        if self._rendered:  # a newer view replaces what a failed flush rendered
            for account_id in snapshots:
                self._rendered.pop(account_id, None)
        self.metrics.redis_pending.set(self.pending)

    async def flush(self) -> int:
        """Write pending snapshots; return how many were written (0 while backing off)."""
        async with self._lock:
            return await self._flush()

    async def _flush(self) -> int:
        if not (self._pending or self._rendered or self._values) or self.clock() < self._retry_at:
            return 0
        batch, self._pending = self._pending, {}
        rendered, self._rendered = self._rendered, {}
        values, self._values = self._values, {}
        pipe = self.client.pipeline(transaction=False)
        # One MSET for every write of the flush: a SET each costs a reply to parse per key.
        writes: dict[str, bytes] = {}
        for key, value in values.items():
            if value is None:
                pipe.delete(key)
            else:
                writes[key] = value
        for n, (account_id, view) in enumerate(batch.items(), 1):
            if n % RENDER_SLICE == 0:
                # Rendering costs ~0.2 ms an account: a flush of thousands would hold the
                # event loop, and every agent's records, for a large part of a second.
                await asyncio.sleep(0)
            try:
                snap = self.render(view)
            except Exception as exc:  # one account's view must not cost the others theirs
                logger.error(
                    "cannot render the read-model view of account %s (%s: %s); skipped",
                    account_id,
                    type(exc).__name__,
                    exc,
                )
                continue
            # Exact-size bytes: orjson's own buffer is several KiB whatever the snapshot's
            # size, and a flush holds thousands of them until Redis answers.
            rendered[account_id] = (json_bytes(snap), float(snap["intent_score"]))
        del batch
        for account_id, (value, _) in rendered.items():
            writes[account_key(self.prefix, account_id)] = value
        if writes:
            pipe.mset(writes)
        if rendered:
            pipe.zadd(by_score_key(self.prefix), {a: score for a, (_, score) in rendered.items()})
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            # Keep what failed, rendered, unless a newer snapshot arrived meanwhile.
            kept = {a: r for a, r in rendered.items() if a not in self._pending}
            self._rendered = {**kept, **self._rendered}
            self._values = {**values, **self._values}
            self._failures += 1
            self.metrics.redis_errors.inc()
            self._retry_at = self.clock() + min(self.max_backoff, 0.25 * 2**self._failures)
            if self._failures == 1:
                logger.warning(
                    "Redis write failed (%s); keeping %d accounts and retrying with back-off",
                    type(exc).__name__,
                    self.pending,
                )
            return 0
        finally:
            self.metrics.redis_pending.set(self.pending)
        if self._failures:
            logger.info("Redis writes recovered after %d failed attempts", self._failures)
            self._failures = 0
        self.metrics.redis_writes.inc(len(rendered) + len(values))
        return len(rendered) + len(values)
