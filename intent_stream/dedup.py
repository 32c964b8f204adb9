"""De-duplication of Segment messages by ``messageId``, shared by every ingest worker via Redis.

A tracker that retries a request sends the same ``messageId`` again, possibly to another
partition; we keep each id in Redis for ``window`` seconds with the raw record (partition and
offset) that first carried it. A message is a duplicate when its id is known *from another
record*: the same record replayed after a crash (at-least-once delivery) is recognised as
itself and its messages go through again, so a crash never loses them.

Redis being down must not stop ingestion: de-duplication then fails open (every message passes)
and the failures are counted; the scoring stage's replay guard still prevents double counting
of replays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["MessageDeduplicator", "dedup_key"]

logger = logging.getLogger(__name__)

# One round trip and one command for any number of records: for each id, claim it for its
# record (SET NX EX) or, if it is taken, report it unless this same record took it. ARGV[1]
# is the window; ARGV[i + 1] the source (record) of KEYS[i].
_CLAIM = """
local dups = {}
for i, key in ipairs(KEYS) do
  if not redis.call('SET', key, ARGV[i + 1], 'NX', 'EX', ARGV[1]) then
    if redis.call('GET', key) ~= ARGV[i + 1] then
      dups[#dups + 1] = i - 1
    end
  end
end
return dups
"""


def dedup_key(prefix: str, message_id: str) -> str:
    """
    >>> dedup_key("intent:", "m-1")
    'intent:msgid:m-1'
    """
    return f"{prefix}msgid:{message_id}"


class MessageDeduplicator:
    """Asks Redis, once per record, which of its message ids were already seen elsewhere."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        window: float,
        on_error: Callable[[], None] = lambda: None,
        max_backoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.window = window
        self.on_error = on_error
        self.max_backoff = max_backoff
        self.clock = clock
        self._failures = 0
        self._retry_at = 0.0
        self._claim = client.register_script(_CLAIM)
        # Keys are passed encoded, as redis-py would encode them: it packs a bytes argument
        # for much less than a str (a record carries a hundred keys).
        options = client.connection_pool.connection_kwargs  # what its get_encoder() reads
        self._encoding: tuple[str, str] = (
            options.get("encoding", "utf-8"),
            options.get("encoding_errors", "strict"),
        )

    async def duplicates(self, message_ids: Sequence[str | None], *, source: str) -> frozenset[int]:
        """Indexes of ``message_ids`` first seen in a record other than ``source``.

        Repeats inside the same record count too (the first one wins). While Redis is failing,
        only those in-record repeats are found, and Redis is retried with back-off.
        """
        (found,) = await self.duplicates_many([(message_ids, source)])
        return found

    async def duplicates_many(
        self, records: Sequence[tuple[Sequence[str | None], str]]
    ) -> list[frozenset[int]]:
        """:meth:`duplicates` of several records ``(message ids, source)`` in one round trip,
        as if asked record after record: an id in two of them is a duplicate in the later.

        The ingest agent asks once for the raw records it took together: one command
        instead of one per record, which for records of one message each was a round trip
        and a script call per message.
        """
        found: list[set[int]] = []
        claims: list[tuple[int, int, str]] = []  # (record, index in it, message id)
        for number, (message_ids, _) in enumerate(records):
            repeats: set[int] = set()
            first: dict[str, int] = {}
            for index, mid in enumerate(message_ids):
                if mid is None:
                    continue
                if mid in first:
                    repeats.add(index)
                else:
                    first[mid] = index
            found.append(repeats)
            claims += [(number, index, mid) for mid, index in first.items()]
        if not claims or self.window <= 0 or self.clock() < self._retry_at:
            return [frozenset(f) for f in found]
        prefix = dedup_key(self.prefix, "")
        encoding, errors = self._encoding
        keys = [(prefix + mid).encode(encoding, errors) for _, _, mid in claims]
        sources = [records[number][1] for number, _, _ in claims]
        try:
            taken = await self._claim(keys=keys, args=[max(1, int(self.window)), *sources])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return [frozenset(f) for f in found]
        if self._failures:
            logger.info("message de-duplication recovered after %d failures", self._failures)
            self._failures = 0
        for i in taken:
            number, index, _ = claims[i]
            found[number].add(index)
        return [frozenset(f) for f in found]

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        self.on_error()
        self._retry_at = self.clock() + min(self.max_backoff, 0.25 * 2**self._failures)
        if self._failures == 1:
            logger.warning(
                "message de-duplication unavailable (%s): letting messages through and "
                "retrying Redis with back-off",
                type(exc).__name__,
            )
