"""What the ingest agent does with one raw record, as plain code.

Trackers publish Segment-spec messages to the raw topic. For each record
:class:`IngestProcessor`:

1. **checks** every message (:func:`intent_stream.events.check_message`) and **normalises** it:
   event time by Segment's rule, lower-cased emails, person ids pseudonymised with a keyed HMAC
   when configured (:meth:`IngestProcessor.check`);
2. after the agent has asked Redis which ``messageId`` values were already seen
   (:mod:`intent_stream.dedup`), **routes** the rest (:meth:`IngestProcessor.route`): the
   identity graph learns from each message and names its account; messages with an account go
   to the account-keyed event topic, grouped by destination partition so that one record
   carries many events; messages of a visitor nobody has identified yet wait in the
   ``pending`` table and are released, with their account, when the visitor is identified
   (within the look-back).

Forwarded records carry ``src``: the raw partition and offset they came from. The scoring
stage keeps, per account, the last source offset applied, so replaying raw records after a
crash (at-least-once) never applies an event twice.

>>> from intent_stream.identity import IdentityGraph, Pseudonymiser
>>> p = IngestProcessor(graph=IdentityGraph(), pseudonymiser=Pseudonymiser(b""), partitions=4)
>>> checked = p.check(b'[{"type": "page", "anonymousId": "c1", "timestamp": 1767225600000},'
...                   b' {"type": "identify", "anonymousId": "c1", "userId": "u1",'
...                   b'  "traits": {"email": "ann@acme.com"}, "timestamp": 1767225660000},'
...                   b' {"type": "track"}]', received_at=1767225700.0)
>>> len(checked.messages), [d.reason for d in checked.dead_letters]
(2, ['missing_id'])
>>> pending = {}
>>> r = p.route(checked.messages[:1], pending=pending, partition=0, offset=7)
>>> r.pended, r.forwards
(1, {})
>>> r = p.route(checked.messages[1:], pending=pending, partition=0, offset=8)
>>> r.released, [e["context"]["groupId"] for batch in r.forwards.values() for e in batch]
(1, ['acme.com', 'acme.com'])
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from intent_stream.events import (
    MAX_EVENT_TIME,
    MIN_EVENT_TIME,
    Rejected,
    checked_event_time,
    decode_record,
)
from intent_stream.identity import IdentityEdge, IdentityGraph, Pseudonymiser
from intent_stream.pipeline import DeadLetter, dump_event, iso
from intent_stream.topics import partition_for

__all__ = [
    "CheckedRecord",
    "Forward",
    "ForwardBatcher",
    "IngestProcessor",
    "IngestResult",
    "Message",
]

_PERSON_FIELDS = ("userId", "anonymousId", "previousId")
#: How many accounts' event-topic partitions an :class:`IngestProcessor` remembers.
_PARTITION_MEMORY = 65_536


@dataclass(slots=True)
class Message:
    """A checked, normalised message and its event time (epoch seconds)."""

    body: dict[str, Any]
    ts: float

    @property
    def message_id(self) -> str | None:
        value = self.body.get("messageId")
        return value if isinstance(value, str) and value else None


@dataclass(slots=True)
class CheckedRecord:
    """The valid messages of a raw record, and what was rejected."""

    messages: list[Message] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(slots=True)
class IngestResult:
    """What routing one record produced: forwards by destination partition, and the rest."""

    forwards: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    edges: list[IdentityEdge] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    pended: int = 0
    released: int = 0
    expired: int = 0
    skipped: int = 0


class IngestProcessor:
    """Checks, normalises, resolves and routes raw Segment messages.

    ``graph`` is this worker's identity graph (shared with the identity-topic reader);
    ``partitions`` is the event topic's partition count; ``lookback`` bounds how old a
    visitor's anonymous activity may be and still be attributed at identification;
    ``pending_max`` bounds how many events one visitor may keep waiting; events stamped more
    than ``max_skew`` seconds after their arrival are rejected (0 accepts any future time).
    """

    def __init__(
        self,
        *,
        graph: IdentityGraph,
        pseudonymiser: Pseudonymiser,
        partitions: int,
        lookback: float = 30 * 86400.0,
        pending_max: int = 200,
        max_skew: float = 86400.0,
    ) -> None:
        self.graph = graph
        self.pseudonymiser = pseudonymiser
        self.partitions = partitions
        self.lookback = lookback
        self.pending_max = pending_max
        self.max_skew = max_skew
        self._partitions: dict[str, int] = {}

    def check(self, value: bytes | None, *, received_at: float) -> CheckedRecord:
        """Decode, check and normalise a raw record's messages."""
        out = CheckedRecord()
        try:
            raw_messages, _ = decode_record(value)
        except Rejected as exc:
            out.dead_letters.append(DeadLetter(exc.reason, exc.detail, value))
            return out
        big = value is not None and len(value) > 32_000
        if not MIN_EVENT_TIME <= received_at < MAX_EVENT_TIME:
            # The record's timestamp is its producer's to set (CreateTime): one that no
            # date can be made of is replaced by this worker's clock, as a missing one is.
            received_at = time.time()
        arrived = iso(received_at)
        max_skew, normalise = self.max_skew, self._normalise
        messages = out.messages
        for raw in raw_messages:
            try:
                body, ts = checked_event_time(
                    raw, received_at=received_at, max_skew=max_skew, check_size=big
                )
            except Rejected as exc:
                out.dead_letters.append(DeadLetter(exc.reason, exc.detail, dump_event(raw)))
                continue
            messages.append(Message(normalise(body, ts, arrived), ts))
        return out

    def _normalise(self, body: dict[str, Any], ts: float, arrived: str) -> dict[str, Any]:
        """``body`` normalised in place: it was decoded for this record and nothing else
        holds it (a rejected message's dead letter is written before any change)."""
        stamp = body.get("timestamp")
        # An ISO-8601 UTC timestamp is already what we would write: keep it (formatting costs).
        if not (isinstance(stamp, str) and stamp.endswith("Z")):
            body["timestamp"] = iso(ts)
        body.setdefault("receivedAt", arrived)
        pseudo = self.pseudonymiser
        if pseudo.enabled:
            for name in _PERSON_FIELDS:
                value = body.get(name)
                if value is None:
                    continue
                if type(value) is int:  # decoded JSON: an integer, not a boolean
                    value = str(value)
                if isinstance(value, str):
                    body[name] = pseudo.person(value)
        else:
            for name in _PERSON_FIELDS:
                if type(body.get(name)) is int:
                    body[name] = str(body[name])
        _normalise_emails(body, pseudo)
        context = body.get("context")
        if isinstance(context, dict):
            _normalise_emails(context, pseudo)
        return body

    def route(
        self,
        messages: list[Message],
        *,
        pending: MutableMapping[str, Any],
        partition: int,
        offset: int,
        duplicates: frozenset[int] = frozenset(),
    ) -> IngestResult:
        """Resolve each message's account and decide where it goes.

        ``duplicates`` holds the indexes of messages already seen (by ``messageId``); they are
        dropped. ``pending`` maps a visitor node to the events waiting for its account. A
        forwarded message's body is the forwarded event (``context.groupId`` set in place):
        route each checked record once.
        """
        result = IngestResult()
        written: set[str] = set()  # visitors this record already pended events for
        # The pending entries this record changed, written to ``pending`` once at the end: a
        # visitor with many events in a record is decoded and encoded once, not per event.
        overlay = _Overlay(pending)
        changed, table = overlay.changed, overlay.table
        observe, resolve = self.graph.observe, self.graph.resolve
        edges, accepted = result.edges, result.accepted
        forwards, destination = result.forwards, self._destination
        for index, message in enumerate(messages):
            if duplicates and index in duplicates:
                result.duplicates += 1
                continue
            body = message.body
            found = observe(body, ts=message.ts)
            if found:
                edges += found
            user = body.get("userId")
            if not (isinstance(user, str) and user):
                user = None
            anon = body.get("anonymousId")
            if not (isinstance(anon, str) and anon):
                anon = None
            account = resolve(user_id=user, anonymous_id=anon)
            accepted[str(body["type"])] += 1
            if account is None:
                self._pend(
                    overlay,
                    "anon:" + anon if anon else "user:" + (user or ""),
                    message,
                    partition,
                    offset,
                    result,
                    written,
                )
                continue
            # Events of this person's visitor node(s) waiting for an account go first.
            if anon is not None:
                node = "anon:" + anon
                if node in changed or node in table:
                    self._release(overlay, node, account, message.ts, result)
            if user is not None:
                node = "user:" + user
                if node in changed or node in table:
                    self._release(overlay, node, account, message.ts, result)
            dest = destination(account)
            batch = forwards.get(dest)
            if batch is None:
                batch = forwards[dest] = []
            batch.append(_routed(body, account))
        overlay.write()
        return result

    def _destination(self, account: str) -> int:
        """The event-topic partition of ``account`` (remembered: accounts recur)."""
        found = self._partitions.get(account)
        if found is None:
            if len(self._partitions) >= _PARTITION_MEMORY:
                self._partitions.clear()
            found = self._partitions[account] = partition_for(account, self.partitions)
        return found

    def _forward(self, result: IngestResult, account: str, body: dict[str, Any]) -> None:
        result.forwards.setdefault(self._destination(account), []).append(_routed(body, account))

    def _pend(
        self,
        pending: MutableMapping[str, Any],
        node: str,
        message: Message,
        partition: int,
        offset: int,
        result: IngestResult,
        written: set[str],
    ) -> None:
        entry = pending.get(node)
        if entry is not None:
            last_partition, last_offset = entry["off"]
            # A record at or below the entry's offset was applied before (a replay), unless
            # the entry is this record's own doing: one visitor's several events in a record.
            if last_partition == partition and offset <= last_offset and node not in written:
                result.skipped += 1
                return
            waiting = [e for e in entry["events"] if e[0] >= message.ts - self.lookback]
            result.expired += len(entry["events"]) - len(waiting)
        else:
            waiting = []
        if self.pending_max <= 0:
            result.expired += 1
            return
        waiting.append([message.ts, message.body])
        if len(waiting) > self.pending_max:
            result.expired += len(waiting) - self.pending_max
            waiting = waiting[-self.pending_max :]
        pending[node] = {"off": [partition, offset], "events": waiting}
        written.add(node)
        result.pended += 1

    def _release(
        self,
        pending: MutableMapping[str, Any],
        node: str,
        account: str,
        now: float,
        result: IngestResult,
    ) -> None:
        entry = pending.pop(node)
        for ts, body in entry["events"]:
            if ts >= now - self.lookback:
                self._forward(result, account, body)
                result.released += 1
            else:
                result.expired += 1

    def sweep(
        self, pending: MutableMapping[str, Any], *, now: float, partition: int, limit: int = 1000
    ) -> int:
        """Drop up to ``limit`` visitors of raw ``partition`` whose newest waiting event is
        older than the look-back at event time ``now``; return how many events were dropped.

        An entry belongs to the partition of the raw record that last wrote it (its ``off``),
        whose changelog holds it: the sweep runs inside that partition's writes, so each
        tombstone lands beside the value it deletes, and entries of partitions another
        worker holds now are not this worker's to delete.
        """
        dropped = 0
        stale = []
        for node, entry in pending.items():
            events = entry["events"]
            if entry["off"][0] != partition:
                continue
            if not events or events[-1][0] < now - self.lookback:
                stale.append((node, len(events)))
                if len(stale) >= limit:
                    break
        for node, n in stale:
            del pending[node]
            dropped += n
        return dropped


@dataclass(frozen=True, slots=True)
class Forward:
    """A record for the account-keyed event topic: events of one destination partition."""

    partition: int
    key: bytes
    value: bytes
    events: int


@dataclass(slots=True)
class _Gathering:
    """One destination partition's events waiting in a :class:`ForwardBatcher`."""

    key: bytes
    chunks: list[bytes] = field(default_factory=list)  # JSON arrays' inner text
    src: list[list[int]] = field(default_factory=list)  # [raw partition, offset, events]
    size: int = 0
    events: int = 0


class ForwardBatcher:
    """Gathers what several raw records forward into one record per destination partition.

    The ingest agent routes raw records one by one (:meth:`IngestProcessor.route`) and adds
    each record's forwards here; :meth:`drain` then gives one record per destination
    partition holding every event routed to it, in order, as
    ``{"src": [[raw partition, raw offset, events], ...], "batch": [...]}``: ``src`` says
    which raw record each run of events came from, for the scorer's replay guard. A
    partition whose events would pass ``max_bytes`` is handed back by :meth:`add` first
    (a single raw record's events larger than that make a record of their own).

    Fewer, larger records on the event topic are what make scoring cheap: Faust's cost is
    per record, and the scorer reads and writes each account once per batch of records.

    >>> b = ForwardBatcher(max_bytes=1 << 20)
    >>> e = lambda n: {"type": "page", "context": {"groupId": "acme.com"}, "n": n}
    >>> b.add(0, 7, {2: [e(1), e(2)]}), b.add(1, 3, {2: [e(3)]})
    ([], [])
    >>> [(f.partition, f.key, f.events, f.value[:34]) for f in b.drain()]
    [(2, b'acme.com', 3, b'{"src":[[0,7,2],[1,3,1]],"batch":[')]
    >>> b.drain()
    []
    """

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._gathering: dict[int, _Gathering] = {}

    def add(
        self, raw_partition: int, raw_offset: int, forwards: Mapping[int, list[dict[str, Any]]]
    ) -> list[Forward]:
        """Add one raw record's forwards; return the records that must go out first."""
        full: list[Forward] = []
        for partition, events in forwards.items():
            chunk = orjson.dumps(events)[1:-1]
            found = self._gathering.get(partition)
            if found is not None and found.size + len(chunk) > self.max_bytes:
                full.append(_record(partition, found))
                found = None
            if found is None:
                key = str(events[0]["context"]["groupId"]).encode()
                found = self._gathering[partition] = _Gathering(key)
            found.chunks.append(chunk)
            found.src.append([raw_partition, raw_offset, len(events)])
            found.size += len(chunk) + 1
            found.events += len(events)
        return full

    def drain(self) -> list[Forward]:
        """Every gathered partition's record; the batcher is empty afterwards."""
        out = [_record(partition, found) for partition, found in self._gathering.items()]
        self._gathering = {}
        return out


def _record(partition: int, found: _Gathering) -> Forward:
    value = b"".join(
        (b'{"src":', orjson.dumps(found.src), b',"batch":[', b",".join(found.chunks), b"]}")
    )
    return Forward(partition, found.key, value, found.events)


class _Overlay(MutableMapping[str, Any]):
    """Changes to a pending table kept as documents until :meth:`write` stores them.

    Reads see the changes; a deleted entry is deleted from the table at once.
    """

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self.changed: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self.changed[key] if key in self.changed else self.table[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.changed[key] if key in self.changed else self.table.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.changed[key] = value

    def __delitem__(self, key: str) -> None:
        found = self.changed.pop(key, None) is not None
        if key in self.table:
            del self.table[key]
        elif not found:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.changed or key in self.table

    def __iter__(self) -> Iterator[str]:
        yield from self.changed
        yield from (k for k in self.table if k not in self.changed)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def write(self) -> None:
        for key, value in self.changed.items():
            self.table[key] = value
        self.changed.clear()


def _normalise_emails(holder: dict[str, Any], pseudo: Pseudonymiser) -> None:
    """Lower-case (and pseudonymise) ``traits.email`` and ``properties.email`` of ``holder``."""
    traits = holder.get("traits")
    if isinstance(traits, dict):
        email = traits.get("email")
        if isinstance(email, str):
            traits["email"] = pseudo.email(email.strip().lower())
    properties = holder.get("properties")
    if isinstance(properties, dict):
        email = properties.get("email")
        if isinstance(email, str):
            properties["email"] = pseudo.email(email.strip().lower())


def _routed(body: dict[str, Any], account: str) -> dict[str, Any]:
    """``body`` as an account event: its ``context.groupId`` names ``account``.

    In place: a message is routed once, and a body is forwarded once (directly, or released
    from the pending table, which then no longer holds it); copying each forwarded event and
    its context cost more than the rest of its routing.
    """
    context = body.get("context")
    if isinstance(context, dict):
        context["groupId"] = account
    else:
        body["context"] = {"groupId": account}
    return body
