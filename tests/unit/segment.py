"""Segment events for the pipeline's unit tests: one place for their shape."""

from __future__ import annotations

from typing import Any

from intent_stream.pipeline import iso

#: Event time zero of the tests (2026-11-18 11:06:40 UTC).
T0 = 1_795_000_000.0


def segment_event(
    account: str,
    t: float = 0.0,
    kind: str = "page",
    path: str = "/pricing",
    person: str = "p1",
    **extra: Any,
) -> dict[str, Any]:
    """A ``kind`` event of ``person`` at ``account``, ``t`` seconds after :data:`T0`."""
    event: dict[str, Any] = {
        "type": kind,
        "userId": person,
        "timestamp": iso(T0 + t),
        "context": {"groupId": account},
        "properties": {"path": path},
    }
    event.update(extra)
    return event
