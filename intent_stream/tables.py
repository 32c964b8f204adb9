"""Faust tables that keep JSON documents as bytes.

The account and pending-visitor tables hold small JSON documents. Kept as Python dicts, each
costs several times its serialized size in memory (every nested dict, list and float is an
object) and Faust encodes it again for the changelog on every write. :class:`JsonTable` keeps
each value as its orjson bytes instead: the in-memory store holds one bytes object per key,
the changelog gets those bytes as they are (``raw`` serializer), and callers still see a
``MutableMapping`` of documents, so the pure code (``pipeline``, ``ingest``) is unchanged.

Values written by an earlier version (Faust's ``json`` serializer) are the same JSON text, so
an existing changelog recovers into a ``JsonTable`` as it is.

Each value is a right-sized copy of what ``orjson.dumps`` returns (:func:`json_bytes`). orjson
(3.12 and later) hands back a bytes object whose allocation is its whole serialization
buffer, rounded up to a power of two and never shrunk: measured with orjson 3.13, a 700-byte
document held 8 KiB, and a worker's RSS grew ~4.3 KB per account for ~760-byte states. A
value that lives as long as its account must not keep that buffer.

Keys too (:func:`json_table`): Faust's ``json`` codec, which typed keys get, is
``orjson.dumps`` as it is, so each changelog message waiting in the producer held a ~4 KiB
buffer for a key of a few dozen bytes. A worker catching up on a backlog has thousands
waiting, and the allocator keeps the peak: at 100,000 accounts its RSS grew 2,377 bytes per
account with Faust's codec and 1,492 with :class:`ExactJson` (same bytes on the changelog).

>>> t = JsonTable({})
>>> t["acme.com"] = {"events": 2, "score": 41.5}
>>> t.raw["acme.com"]
b'{"events":2,"score":41.5}'
>>> t.get("acme.com")["events"], t.get("nobody"), len(t)
(2, None, 1)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import orjson
from faust.serializers.codecs import Codec

__all__ = ["ExactJson", "JsonTable", "json_bytes", "json_table", "put", "stage_of"]


def json_bytes(value: Any) -> bytes:
    """``value``'s orjson bytes in an allocation of their own size, to be kept for long.

    ``orjson.dumps`` returns its whole (power-of-two) buffer; joining with ``b""`` copies the
    bytes into an exact-size object (cheaper than ``bytes(memoryview(...))``).

    >>> json_bytes({"a": [1, 2.5]})
    b'{"a":[1,2.5]}'
    """
    return b"".join((orjson.dumps(value), b""))


class ExactJson(Codec):
    """Faust's ``json`` codec for keys and values of plain JSON types, each encoding in an
    allocation of its own size (:func:`json_bytes`).

    >>> ExactJson().dumps("acme.com"), ExactJson().loads(b'"acme.com"')
    (b'"acme.com"', 'acme.com')
    """

    def _dumps(self, obj: Any) -> bytes:
        return json_bytes(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


def json_table(app: Any, name: str, *, partitions: int) -> JsonTable:
    """A :class:`JsonTable` over a new Faust table ``name`` of ``app``: string keys, JSON
    encoded on its changelog by :class:`ExactJson` (the text Faust's ``json`` codec writes,
    so an existing changelog recovers as it is), values the documents' bytes as they are."""
    table = app.Table(name, default=None, partitions=partitions, key_type=str, value_type=bytes)
    # Faust picks the key codec from key_type; the table sends its changelog messages with
    # it, and the changelog topic (made as the table registers) decodes recovered ones.
    table.key_serializer = table.changelog_topic.key_serializer = ExactJson()
    return JsonTable(table)


def put(table: MutableMapping[str, Any], key: str, value: Any, *, partition: int) -> None:
    """``table[key] = value``, its changelog message in ``partition`` when ``table`` has a
    changelog (a :class:`JsonTable` over a Faust table); any other mapping just sets it.

    >>> t = {}
    >>> put(t, "acme.com", {"events": 1}, partition=3); t
    {'acme.com': {'events': 1}}
    """
    if isinstance(table, JsonTable):
        table.put(key, value, partition=partition)
    else:
        table[key] = value


class JsonTable(MutableMapping[str, Any]):
    """A mapping of JSON documents over ``raw``, a mapping (a Faust table) of their bytes."""

    def __init__(self, raw: MutableMapping[str, Any]) -> None:
        self.raw = raw
        #: Changelog partition of writes and deletes made with ``[]`` (see in_partition).
        self.partition: int | None = None

    @contextmanager
    def in_partition(self, partition: int) -> Iterator[None]:
        """Within the block, ``table[key] = ...`` and ``del table[key]`` send their changelog
        messages to ``partition`` (as :meth:`put` does), whatever event the stream is on.

        An agent that takes several records at once (``take_events``) is on no record of
        them while it applies each: it names the partition of the record it applies.

        >>> t = JsonTable({"a": b"1"})
        >>> with t.in_partition(2):
        ...     t["b"] = 3
        ...     del t["a"]
        >>> t.raw, t.partition
        ({'b': b'3'}, None)
        """
        before, self.partition = self.partition, partition
        try:
            yield
        finally:
            self.partition = before

    def put(self, key: str, value: Any, *, partition: int) -> None:
        """Set ``key`` with its changelog message in ``partition``.

        A Faust table sends a write's changelog message to the partition of the event the
        stream is on (``current_event()``). An agent that applies a batch of records from
        several partitions is on one event while it writes the others' accounts, so it
        names the partition: the account topic's partition the account's records came
        from, which is the changelog partition its worker recovers.

        >>> t = JsonTable({})
        >>> t.put("acme.com", {"events": 2}, partition=1); t.raw
        {'acme.com': b'{"events":2}'}
        """
        raw, data = self.raw, json_bytes(value)
        send = getattr(raw, "send_changelog", None)
        if send is None:
            raw[key] = data
            return
        send(partition, key, data)
        store = raw.data  # type: ignore[attr-defined]  # the Faust table's store
        store[key] = data
        _owned(store, key, partition)
        # What Faust's own write does next: count the write for its sensors (the table
        # operations metric). The accounts table has no key TTL to set.
        on_set = getattr(raw, "_sensor_on_set", None)
        if on_set is not None:
            on_set(raw, key, data)

    def __getitem__(self, key: str) -> Any:
        return orjson.loads(self.raw[key])

    def get(self, key: str, default: Any = None) -> Any:
        value = self.raw.get(key)
        return default if value is None else orjson.loads(value)

    def __setitem__(self, key: str, value: Any) -> None:
        if self.partition is not None:
            self.put(key, value, partition=self.partition)
        else:
            self.raw[key] = json_bytes(value)

    def __delitem__(self, key: str) -> None:
        raw = self.raw
        send = getattr(raw, "send_changelog", None)
        if self.partition is None or send is None:
            del raw[key]
            return
        store = raw.data  # type: ignore[attr-defined]  # the Faust table's store
        del store[key]
        _owned(store, key, None)
        send(self.partition, key, None, value_serializer="raw")  # the tombstone
        on_del = getattr(raw, "_sensor_on_del", None)
        if on_del is not None:
            on_del(raw, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __contains__(self, key: object) -> bool:
        return key in self.raw


def _owned(store: Any, key: str, partition: int | None) -> None:
    """Record (or forget) which changelog partition ``key`` was written to in ``store``.

    Faust's memory store drops, when a rebalance's recovery completes, the keys of the
    partitions this worker no longer holds, but it knows a key's partition only from the
    changelog messages it recovered: keys this worker wrote itself would outlive the loss
    of their partition and be counted, swept and held in memory as if still its own. Its
    map of key to partition is private to it (``_key_partition``); other stores (rocksdb)
    keep a database per partition and need nothing.

    >>> class Store(dict):
    ...     def __init__(self) -> None:
    ...         self._key_partition: dict[str, int] = {}
    >>> s = Store(); _owned(s, "a", 3); _owned(s, "b", 1); _owned(s, "b", None)
    >>> s._key_partition
    {'a': 3}
    """
    where = getattr(store, "_key_partition", None)
    if not isinstance(where, dict):
        return
    if partition is None:
        where.pop(key, None)
    else:
        where[key] = partition


#: The stage name in an account document: pipeline writes ``"stage": {"s": NAME, ...}``.
_STAGE = re.compile(rb'"stage":\{"s":"((?:[^"\\]|\\.)*)"')


def stage_of(value: bytes | None) -> str | None:
    """The stage name in an account document's bytes, without decoding the whole document.

    Counting accounts per stage reads every account every few seconds; decoding each
    document for one field would cost more than the scoring it reports on.

    >>> stage_of(orjson.dumps({"events": 3, "stage": {"s": "evaluation", "t": 1.0}}))
    'evaluation'
    >>> stage_of(b'{"events":3}') is None and stage_of(None) is None
    True
    """
    if not value:
        return None
    found = _STAGE.search(value)
    if found is None:
        return None
    name = found.group(1)
    return (orjson.loads(b'"' + name + b'"') if b"\\" in name else name.decode()) or None
