"""Faust tables that keep JSON documents as bytes.

The account and pending-visitor tables hold small JSON documents. Kept as Python dicts, each
costs several times its serialized size in memory (every nested dict, list and float is an
object) and Faust encodes it again for the changelog on every write. :class:`JsonTable` keeps
each value as its orjson bytes instead: the in-memory store holds one bytes object per key,
the changelog gets those bytes as they are (``raw`` serializer), and callers still see a
``MutableMapping`` of documents, so the pure code (``pipeline``, ``ingest``) is unchanged.

Values written by an earlier version (Faust's ``json`` serializer) are the same JSON text, so
an existing changelog recovers into a ``JsonTable`` as it is.

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
from typing import Any

import orjson

__all__ = ["JsonTable", "stage_of"]


class JsonTable(MutableMapping[str, Any]):
    """A mapping of JSON documents over ``raw``, a mapping (a Faust table) of their bytes."""

    def __init__(self, raw: MutableMapping[str, Any]) -> None:
        self.raw = raw

    def __getitem__(self, key: str) -> Any:
        return orjson.loads(self.raw[key])

    def get(self, key: str, default: Any = None) -> Any:
        value = self.raw.get(key)
        return default if value is None else orjson.loads(value)

    def __setitem__(self, key: str, value: Any) -> None:
        self.raw[key] = orjson.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __contains__(self, key: object) -> bool:
        return key in self.raw


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
