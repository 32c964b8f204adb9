"""Decoding and checking the records of the account-keyed event topic.

A record's value is one Segment-spec event (a JSON object), a JSON array of events, or a
Segment batch envelope ``{"batch": [...]}``: Faust pays its cost per Kafka record, so writers
should carry many events per record. Every failure raises :class:`Rejected` with a short,
bounded ``reason`` (used as a metric label and as the dead-letter header) and a ``detail``
for people.

>>> events = decode_record(b'{"type": "track", "event": "Demo Requested", "userId": "u1",'
...                        b' "timestamp": "2026-11-20T10:00:00Z",'
...                        b' "context": {"groupId": "acme.com"}}')
>>> e = parse_event(events[0])
>>> (e.account_id, e.type, e.person_id, e.ts)
('acme.com', 'track', 'u1', 1795168800.0)
>>> decode_record(b"not json")
Traceback (most recent call last):
...
intent_stream.events.Rejected: invalid_json: the record is not valid UTF-8 JSON
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_RECORD_BYTES",
    "SEGMENT_TYPES",
    "Event",
    "Rejected",
    "account_of",
    "decode_record",
    "parse_event",
    "parse_timestamp",
]

#: Segment Spec call types.
SEGMENT_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
#: Larger records are rejected before decoding (Segment's own batch limit is 500 KB).
MAX_RECORD_BYTES = 1_000_000
MAX_ID_LENGTH = 256


class Rejected(ValueError):
    """A record or event the engine will not apply; it goes to the dead-letter topic."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Event:
    """A checked event: its account, event time (epoch seconds) and the Segment body."""

    account_id: str
    ts: float
    type: str
    person_id: str | None
    body: dict[str, Any]


def decode_record(value: bytes | None) -> list[Any]:
    """The events in a record's value (unchecked), or :class:`Rejected`."""
    if not value:
        raise Rejected("empty", "the record has no value")
    if len(value) > MAX_RECORD_BYTES:
        raise Rejected("too_large", f"the record has {len(value)} bytes (max {MAX_RECORD_BYTES})")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise Rejected("invalid_json", "the record is not valid UTF-8 JSON") from None
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        batch = doc.get("batch")
        if batch is None:
            return [doc]
        if isinstance(batch, list):
            return batch
        raise Rejected("invalid_batch", "'batch' must be a JSON array of events")
    raise Rejected("not_an_event", "the record must hold a JSON object or array")


def account_of(body: dict[str, Any]) -> str | None:
    """The account an event belongs to: ``groupId`` of a group call, else ``context.groupId``.

    >>> account_of({"type": "group", "groupId": "acme.com"})
    'acme.com'
    >>> account_of({"type": "page", "context": {"groupId": "acme.com"}})
    'acme.com'
    """
    if body.get("type") == "group":
        gid = body.get("groupId")
        if isinstance(gid, str) and gid:
            return gid
    ctx = body.get("context")
    if isinstance(ctx, dict):
        gid = ctx.get("groupId")
        if isinstance(gid, str) and gid:
            return gid
    return None


def parse_timestamp(value: Any) -> float:
    """Epoch seconds from an ISO-8601 string (``Z`` or offset) or epoch milliseconds.

    >>> parse_timestamp("2026-01-01T00:00:00.000Z")
    1767225600.0
    >>> parse_timestamp(1767225600000)
    1767225600.0
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise Rejected("bad_timestamp", "timestamp is not ISO-8601") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value) / 1000.0
    raise Rejected("bad_timestamp", "timestamp must be an ISO-8601 string or epoch milliseconds")


def _id(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise Rejected("bad_field", f"{name} must be a non-empty string of at most {MAX_ID_LENGTH}")
    return value


def parse_event(obj: Any) -> Event:
    """Check one decoded event and return it as an :class:`Event`, or :class:`Rejected`."""
    if not isinstance(obj, dict):
        raise Rejected("not_an_event", "an event must be a JSON object")
    kind = obj.get("type")
    if kind not in SEGMENT_TYPES:
        raise Rejected("bad_type", f"type must be one of {', '.join(sorted(SEGMENT_TYPES))}")
    person = _id(obj, "userId") or _id(obj, "anonymousId")
    if person is None:
        raise Rejected("missing_id", "an event needs userId or anonymousId")
    account = account_of(obj)
    if account is None:
        raise Rejected("missing_account", "an event needs context.groupId (or groupId on group)")
    if len(account) > MAX_ID_LENGTH:
        raise Rejected("bad_field", f"the account id is longer than {MAX_ID_LENGTH}")
    stamp = obj.get("timestamp", obj.get("originalTimestamp"))
    if stamp is None:
        raise Rejected("bad_timestamp", "an event needs a timestamp")
    return Event(
        account_id=account, ts=parse_timestamp(stamp), type=kind, person_id=person, body=obj
    )
