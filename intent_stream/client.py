"""Publishing Segment-spec events to the raw topic from Python, without the HTTP collector.

:class:`IntentClient` is a small tracker library on top of kafka-python: Segment-like calls
(``track``, ``identify``, ``page``, ``screen``, ``group``, ``alias``), every message checked
with :func:`intent_stream.events.check_message` before it leaves the process, and messages
batched per destination partition into ``{"batch": [...]}`` records, because the engine's
consumers pay their cost per Kafka record, not per event.

Routing is shared with the HTTP collector (:func:`route_records`): a message goes to the
partition of its *visitor key* (``anonymousId``, else ``userId``) under Kafka's default
partitioner, so one visitor's events always land in one partition, in order.

>>> msgs = [{"type": "page", "anonymousId": "a1"}, {"type": "page", "userId": 7},
...         {"type": "track", "anonymousId": "a1", "event": "Demo Requested"}]
>>> [visitor_key(m) for m in msgs]
['a1', '7', 'a1']
>>> records = route_records(msgs, partitions=4)
>>> sum(r.events for r in records)
3
>>> len({r.partition for r in records}) == len(records)
True

Exceptions::

    ValueError
     └── InvalidMessage        a message failed the Segment checks (``field`` names the field)
    RuntimeError
     └── DeliveryError         the broker did not acknowledge some messages
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any

import orjson

from intent_stream import __version__
from intent_stream.events import MAX_RECORD_BYTES, Rejected, check_message
from intent_stream.topics import partition_for

__all__ = [
    "DEFAULT_RAW_TOPIC",
    "DeliveryError",
    "IntentClient",
    "InvalidMessage",
    "RawRecord",
    "SendSummary",
    "file_size",
    "prepare_message",
    "route_records",
    "send_jsonl",
    "utc_iso",
    "visitor_key",
]

logger = logging.getLogger(__name__)

DEFAULT_RAW_TOPIC = "intent.events.raw.v1"
#: Records are kept below the ingest side's limit, with room for the envelope.
_RECORD_BUDGET = MAX_RECORD_BYTES - 1024


class InvalidMessage(ValueError):
    """A message failed the Segment checks; ``reason`` and ``field`` say which rule and where."""

    def __init__(self, rejected: Rejected) -> None:
        where = f" (field {rejected.field!r})" if rejected.field else ""
        super().__init__(f"{rejected.reason}: {rejected.detail}{where}")
        self.reason = rejected.reason
        self.detail = rejected.detail
        self.field = rejected.field


class DeliveryError(RuntimeError):
    """The broker did not acknowledge some messages (they may be retried by sending again)."""


def utc_iso(ts: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds, the form Segment uses.

    >>> utc_iso(1767225600.5)
    '2026-01-01T00:00:00.500Z'
    """
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def visitor_key(message: Mapping[str, Any]) -> str:
    """The routing key of a message: ``anonymousId`` if present, else ``userId`` (as text).

    The anonymous id comes first because it is the one id every event of a visitor carries,
    before and after they identify; the ingest agent keeps a visitor's pending events by it.

    >>> visitor_key({"anonymousId": "c-81f2", "userId": "u1"})
    'c-81f2'
    >>> visitor_key({"userId": 42})
    '42'
    """
    for name in ("anonymousId", "userId"):
        value = message.get(name)
        if value is not None and value != "":
            return str(value)
    return ""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record for the raw topic: a ``{"batch": [...]}`` of one partition's events."""

    partition: int
    key: bytes
    value: bytes
    events: int


def route_records(
    messages: Sequence[Mapping[str, Any]],
    *,
    partitions: int,
    max_record_bytes: int = _RECORD_BUDGET,
) -> list[RawRecord]:
    """Group ``messages`` by destination partition into as few records as possible.

    One record per partition (order within a partition kept), keyed by the visitor key of its
    first message; a group whose encoding would exceed ``max_record_bytes`` is split in halves.
    """
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for message in messages:
        groups.setdefault(partition_for(visitor_key(message), partitions), []).append(message)
    out: list[RawRecord] = []
    for partition, group in groups.items():
        out.extend(_encode(partition, group, max_record_bytes))
    return out


def _encode(partition: int, group: list[Mapping[str, Any]], limit: int) -> list[RawRecord]:
    value = orjson.dumps({"batch": group})
    if len(value) <= limit or len(group) == 1:
        return [RawRecord(partition, visitor_key(group[0]).encode(), value, len(group))]
    half = len(group) // 2
    return _encode(partition, group[:half], limit) + _encode(partition, group[half:], limit)


def prepare_message(message: Mapping[str, Any], *, now: float | None = None) -> dict[str, Any]:
    """A checked, stamped copy of ``message``, or :class:`InvalidMessage` naming the field.

    Adds ``messageId`` (a uuid4) and ``timestamp`` (``now``) when missing (a message carrying
    ``originalTimestamp`` keeps it instead), turns ``datetime`` timestamps into ISO-8601 and
    records the library in ``context.library``.

    >>> m = prepare_message({"type": "page", "anonymousId": "a1"}, now=1767225600.0)
    >>> (m["timestamp"], len(m["messageId"]), m["context"]["library"]["name"])
    ('2026-01-01T00:00:00.000Z', 36, 'intent_stream')
    >>> prepare_message({"type": "track", "anonymousId": "a1"})
    Traceback (most recent call last):
    ...
    intent_stream.client.InvalidMessage: bad_field: track needs 'event', ... (field 'event')
    """
    if not isinstance(message, Mapping):  # e.g. a JSONL line holding an array or a number
        raise InvalidMessage(Rejected("not_an_event", "a message must be a JSON object"))
    msg = dict(message)
    for name in ("timestamp", "originalTimestamp", "sentAt"):
        if name in msg:
            msg[name] = _stamp_time(msg[name])
    try:
        check_message(msg, check_size=True)
    except Rejected as exc:
        raise InvalidMessage(exc) from None
    if msg.get("messageId") is None:
        msg["messageId"] = str(uuid.uuid4())
    if msg.get("timestamp") is None and msg.get("originalTimestamp") is None:
        msg["timestamp"] = utc_iso(time.time() if now is None else now)
    context = msg.get("context")
    if context is None or "library" not in context:
        msg["context"] = {
            **(context or {}),
            "library": {"name": "intent_stream", "version": __version__},
        }
    return msg


def _stamp_time(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return utc_iso(value.timestamp())
    return value


class IntentClient:
    """A thread-safe Segment-style tracker that writes straight to the raw topic.

    Messages are buffered per destination partition and written as one ``{"batch": [...]}``
    record when ``batch_size`` messages are waiting or the oldest has waited ``linger``
    seconds; :meth:`flush` writes everything and waits for the broker's acknowledgement.

    ``partitions`` must be the raw topic's partition count (create the topics first with
    ``intent-stream topics create``); left out, it is read from the broker's metadata.
    ``producer_options`` go to :class:`kafka.KafkaProducer` unchanged (TLS, SASL, ...).

    Example (needs a broker)::

        with IntentClient(bootstrap_servers="kafka:9092") as client:
            client.identify(user_id="u-1", traits={"email": "ada@acme.com"})
            client.track(user_id="u-1", event="Demo Requested",
                         context={"groupId": "acme.com"})
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str | Sequence[str],
        topic: str = DEFAULT_RAW_TOPIC,
        partitions: int | None = None,
        batch_size: int = 100,
        linger: float = 0.1,
        client_id: str = "intent-stream-client",
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        from kafka import KafkaProducer

        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if linger < 0:
            raise ValueError("linger must be 0 or more seconds")
        servers = (
            bootstrap_servers.split(",")
            if isinstance(bootstrap_servers, str)
            else bootstrap_servers
        )
        self.bootstrap_servers = list(servers)
        self.topic = topic
        self.batch_size = batch_size
        self.linger = linger
        self.client_id = client_id
        options: dict[str, Any] = {"linger_ms": 5, "acks": "all", "max_request_size": 4 << 20}
        options.update(producer_options or {})
        self._producer = KafkaProducer(
            bootstrap_servers=self.bootstrap_servers, client_id=client_id, **options
        )
        if partitions is None:
            found = self._producer.partitions_for(topic)
            if not found:
                self._producer.close(timeout=5)
                raise ValueError(f"topic {topic} has no partitions: create it first")
            partitions = len(found)
        self.partitions = partitions
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # Delivery callbacks run on kafka-python's sender thread, which must never wait for
        # self._lock: a send() blocked on a full producer buffer holds it.
        self._stats_lock = threading.Lock()
        self._buffers: dict[int, list[dict[str, Any]]] = {}
        self._oldest: dict[int, float] = {}
        self._delivered = 0
        self._failed = 0
        self._failed_seen = 0
        self._last_error: BaseException | None = None
        self._closed = False
        self._lingerer = threading.Thread(
            target=self._linger_loop, name="intent-client-linger", daemon=True
        )
        self._lingerer.start()

    # -- Segment calls ------------------------------------------------------------------
    def track(
        self,
        *,
        event: str,
        user_id: str | int | None = None,
        anonymous_id: str | int | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> str:
        """Record that a person did something; returns the message id."""
        return self.send(
            _message(
                "track",
                user_id,
                anonymous_id,
                context,
                timestamp,
                message_id,
                integrations,
                event=event,
                properties=properties,
            )
        )

    def identify(
        self,
        *,
        user_id: str | int | None = None,
        anonymous_id: str | int | None = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> str:
        """Say who a person is (``traits``: email, name, company ...); returns the message id."""
        return self.send(
            _message(
                "identify",
                user_id,
                anonymous_id,
                context,
                timestamp,
                message_id,
                integrations,
                traits=traits,
            )
        )

    def page(
        self,
        *,
        user_id: str | int | None = None,
        anonymous_id: str | int | None = None,
        name: str | None = None,
        category: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> str:
        """Record a web page view (``properties.path``, ``url`` ...); returns the message id."""
        return self.send(
            _message(
                "page",
                user_id,
                anonymous_id,
                context,
                timestamp,
                message_id,
                integrations,
                name=name,
                category=category,
                properties=properties,
            )
        )

    def screen(
        self,
        *,
        user_id: str | int | None = None,
        anonymous_id: str | int | None = None,
        name: str | None = None,
        category: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> str:
        """Record a mobile screen view; returns the message id."""
        return self.send(
            _message(
                "screen",
                user_id,
                anonymous_id,
                context,
                timestamp,
                message_id,
                integrations,
                name=name,
                category=category,
                properties=properties,
            )
        )

    def group(
        self,
        *,
        group_id: str,
        user_id: str | int | None = None,
        anonymous_id: str | int | None = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> str:
        """Tie a person to an account (``group_id``, e.g. its domain); returns the message id."""
        return self.send(
            _message(
                "group",
                user_id,
                anonymous_id,
                context,
                timestamp,
                message_id,
                integrations,
                groupId=group_id,
                traits=traits,
            )
        )

    def alias(
        self,
        *,
        previous_id: str | int,
        user_id: str | int,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | None = None,
        message_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
    ) -> str:
        """Merge ``previous_id`` (an earlier id) into ``user_id``; returns the message id."""
        return self.send(
            _message(
                "alias",
                user_id,
                None,
                context,
                timestamp,
                message_id,
                integrations,
                previousId=previous_id,
            )
        )

    # -- the core -----------------------------------------------------------------------
    def send(self, message: Mapping[str, Any]) -> str:
        """Check, stamp and queue one Segment-spec message; returns its ``messageId``.

        The caller's mapping is not changed. Raises :class:`InvalidMessage` on a message the
        engine would reject. ``messageId`` (a uuid4) and ``timestamp`` (now) are added when
        missing; a message carrying ``originalTimestamp`` keeps it instead of a timestamp.
        """
        msg = prepare_message(message)
        partition = partition_for(visitor_key(msg), self.partitions)
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            buffer = self._buffers.setdefault(partition, [])
            if not buffer:
                self._oldest[partition] = time.monotonic()
                self._wake.notify()
            buffer.append(msg)
            if len(buffer) >= self.batch_size:
                self._emit(partition)
        return str(msg["messageId"])

    def flush(self, timeout: float | None = None) -> None:
        """Write every buffered message and wait for the broker to acknowledge them.

        Raises :class:`DeliveryError` if messages failed since the previous flush.
        """
        with self._lock:
            for partition in list(self._buffers):
                self._emit(partition)
        self._producer.flush(timeout=timeout)
        with self._stats_lock:
            failed = self._failed - self._failed_seen
            self._failed_seen = self._failed
            error = self._last_error
        if failed:
            raise DeliveryError(f"{failed} message(s) were not acknowledged by the broker: {error}")

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the linger thread and close the producer (idempotent)."""
        with self._lock:
            if self._closed:
                return
        try:
            self.flush(timeout=timeout)
        finally:
            with self._lock:
                self._closed = True
                self._wake.notify()
            self._lingerer.join(timeout=5)
            self._producer.close(timeout=timeout if timeout is not None else 10)

    @property
    def delivered(self) -> int:
        """Messages the broker has acknowledged so far."""
        with self._stats_lock:
            return self._delivered

    @property
    def failed(self) -> int:
        """Messages the broker has refused or that timed out so far."""
        with self._stats_lock:
            return self._failed

    def __enter__(self) -> IntentClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # Do not hide the exception in flight behind a delivery error.
        try:
            self.close()
        except Exception:
            logger.exception("closing the intent client after an error failed")

    # -- internals (called with the lock held) -------------------------------------------
    def _emit(self, partition: int) -> None:
        messages = self._buffers.pop(partition, None)
        self._oldest.pop(partition, None)
        if not messages:
            return
        for record in route_records(messages, partitions=self.partitions):
            future = self._producer.send(
                self.topic, value=record.value, key=record.key, partition=record.partition
            )
            future.add_callback(self._on_delivered, record.events)
            future.add_errback(self._on_failed, record.events)

    def _on_delivered(self, n: int, _metadata: Any) -> None:
        with self._stats_lock:
            self._delivered += n

    def _on_failed(self, n: int, error: BaseException) -> None:
        with self._stats_lock:
            self._failed += n
            self._last_error = error
        logger.warning("%d message(s) not delivered to %s: %s", n, self.topic, error)

    def _linger_loop(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._oldest:
                    self._wake.wait()
                    continue
                due = min(self._oldest.values()) + self.linger
                wait = due - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                now = time.monotonic()
                for partition, since in list(self._oldest.items()):
                    if now - since >= self.linger:
                        self._emit(partition)


def _message(
    kind: str,
    user_id: str | int | None,
    anonymous_id: str | int | None,
    context: Mapping[str, Any] | None,
    timestamp: datetime | str | None,
    message_id: str | None,
    integrations: Mapping[str, Any] | None,
    **fields: Any,
) -> dict[str, Any]:
    candidates: dict[str, Any] = {
        "type": kind,
        "userId": user_id,
        "anonymousId": anonymous_id,
        "context": dict(context) if context is not None else None,
        "timestamp": timestamp,
        "messageId": message_id,
        "integrations": dict(integrations) if integrations is not None else None,
        **fields,
    }
    return {k: v for k, v in candidates.items() if v is not None}


# -- publishing a JSONL file (``intent-stream send``) ---------------------------------------
@dataclass
class SendSummary:
    """What :func:`send_jsonl` did: lines read, events sent and acknowledged, bad lines."""

    lines: int = 0
    queued: int = 0
    delivered: int = 0
    bad: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: Stopped by Ctrl-C: what was queued before was still flushed, the rest not read.
    interrupted: bool = False
    #: Bytes of the input read (all of it unless ``interrupted``).
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.bad == 0
            and self.failed == 0
            and self.delivered == self.queued
            and not self.interrupted
        )


#: Bad lines printed one by one before the rest are only counted.
_MAX_BAD_SHOWN = 100


def send_jsonl(
    client: IntentClient,
    stream: IO[bytes],
    *,
    total_bytes: int | None = None,
    rate: float | None = None,
    err: IO[str] | None = None,
    progress_every: float = 0.5,
) -> SendSummary:
    """Publish one Segment message per line of ``stream`` through ``client``.

    Blank lines are skipped; a line that is not JSON or fails the Segment checks is reported
    on ``err`` with its number and reason, and the rest go on. ``rate`` (events per second)
    paces the sending; the progress line shows events sent, events/s and, when
    ``total_bytes`` is known, the share of the file read. Ctrl-C stops the reading; the
    events queued so far are still flushed and the summary says so (``interrupted``).
    """
    out = err if err is not None else sys.stderr
    interactive = out.isatty()
    summary = SendSummary()
    start = time.monotonic()
    try:
        _send_lines(client, stream, summary, out, start, rate, total_bytes, progress_every)
    except KeyboardInterrupt:
        summary.interrupted = True
        if interactive:
            out.write("\n")
        print(
            "interrupted: flushing the events queued so far (Ctrl-C again to abandon them)",
            file=out,
            flush=True,
        )
    try:
        client.flush()
    except DeliveryError as exc:
        summary.errors.append(str(exc))
    summary.seconds = time.monotonic() - start
    summary.delivered = client.delivered
    summary.failed = client.failed
    _progress(
        out,
        summary.queued,
        summary.seconds,
        summary.bytes_read,
        total_bytes,
        interactive,
        final=True,
    )
    if summary.bad > _MAX_BAD_SHOWN:
        print(f"... and {summary.bad - _MAX_BAD_SHOWN} more bad line(s)", file=out)
    return summary


def _send_lines(
    client: IntentClient,
    stream: IO[bytes],
    summary: SendSummary,
    out: IO[str],
    start: float,
    rate: float | None,
    total_bytes: int | None,
    progress_every: float,
) -> None:
    """Queue every line of ``stream`` (:func:`send_jsonl`), counting in ``summary`` as it
    goes, so that an interrupted send still reports what it read."""
    interactive, last_shown = out.isatty(), start
    for number, line in enumerate(stream, start=1):
        summary.bytes_read += len(line)
        summary.lines = number
        if not line.strip():
            continue
        try:
            client.send(orjson.loads(line))
        except orjson.JSONDecodeError:
            _bad(summary, out, number, "invalid_json: the line is not a JSON object")
            continue
        except InvalidMessage as exc:
            _bad(summary, out, number, str(exc))
            continue
        summary.queued += 1
        if rate:
            ahead = start + summary.queued / rate - time.monotonic()
            if ahead > 0:
                # Pacing is the point of --rate; nothing else is waited for here.
                time.sleep(ahead)
        now = time.monotonic()
        if now - last_shown >= (progress_every if interactive else 5.0):
            last_shown = now
            _progress(
                out, summary.queued, now - start, summary.bytes_read, total_bytes, interactive
            )


def _bad(summary: SendSummary, out: IO[str], number: int, reason: str) -> None:
    summary.bad += 1
    if summary.bad <= _MAX_BAD_SHOWN:
        if out.isatty():
            out.write("\r\x1b[K")
        print(f"line {number}: {reason}", file=out)


def _progress(
    out: IO[str],
    sent: int,
    seconds: float,
    read: int,
    total: int | None,
    interactive: bool,
    *,
    final: bool = False,
) -> None:
    eps = sent / seconds if seconds > 0 else 0.0
    share = f"  {100.0 * read / total:5.1f}%" if total else ""
    text = f"sent {sent:,} events  {eps:,.0f} events/s{share}"
    if interactive:
        out.write("\r\x1b[K" + text + ("\n" if final else ""))
        out.flush()
    else:
        print(text, file=out, flush=True)


def file_size(path: str) -> int | None:
    """The size of ``path`` if it is a regular file (not stdin or a pipe)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None
