"""Alerts on the sales side: the CloudEvents envelope, ``alerts tail`` and ``alerts forward``.

The scoring agent builds each alert's headers with :func:`cloudevent_headers`; the consumers
read alerts back as :class:`ReceivedAlert`. Modules: :mod:`~intent_stream.alerts.envelope`
(pure), :mod:`~intent_stream.alerts.webhook` (bodies, retry rules, one POST),
:mod:`~intent_stream.alerts.forward` (the forwarder loop) and
:mod:`~intent_stream.alerts.tail`. Only the envelope is imported here, so the worker does not
load the consumers' dependencies.
"""

from __future__ import annotations

from intent_stream.alerts.envelope import (
    InvalidAlert,
    ReceivedAlert,
    cloudevent_headers,
    event_source,
    event_type,
    human_line,
)

__all__ = [
    "InvalidAlert",
    "ReceivedAlert",
    "cloudevent_headers",
    "event_source",
    "event_type",
    "human_line",
]
