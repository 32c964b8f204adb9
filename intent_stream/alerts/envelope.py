"""The alert envelope: CloudEvents 1.0 attributes in Kafka headers, and how alerts are shown.

Alerts travel in CloudEvents *binary mode* over Kafka: the record value is the alert itself
(JSON), the event attributes are ``ce_*`` headers, and ``content-type`` names the value's
media type. Everything here is pure: bytes and dicts in, bytes and dicts out.

>>> alert = {"alert_id": "a1", "account_id": "acme.com", "rule": "intent_threshold",
...          "event_time": "2026-11-20T10:11:40.000Z", "intent_score": 83.4}
>>> headers = dict(cloudevent_headers(alert, source=event_source("intent-stream")))
>>> headers["ce_id"], headers["ce_type"], headers["ce_subject"]
(b'a1', b'io.intent-stream.alert.intent_threshold', b'acme.com')
>>> received = ReceivedAlert.from_record(orjson.dumps(alert), list(headers.items()))
>>> received.cloud_event()["source"]
'/intent-stream/intent-stream'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "CONTENT_TYPE",
    "SPEC_VERSION",
    "TYPE_PREFIX",
    "InvalidAlert",
    "ReceivedAlert",
    "cloudevent_headers",
    "event_source",
    "event_type",
    "human_line",
]

SPEC_VERSION = "1.0"
#: ``ce_type`` is this prefix followed by the alert's rule (``intent_threshold`` ...).
TYPE_PREFIX = "io.intent-stream.alert."
CONTENT_TYPE = "application/json"

# CloudEvents attribute -> the alert field it mirrors (used when a record has no ce_* header,
# e.g. one written before the envelope existed).
_FROM_PAYLOAD = {"id": "alert_id", "subject": "account_id", "time": "event_time"}


class InvalidAlert(ValueError):
    """A record on the alerts topic that is not an alert (not a JSON object, no alert id)."""


def event_source(app_id: str) -> str:
    """The ``ce_source`` of alerts published by the worker group ``app_id``.

    >>> event_source("intent-stream")
    '/intent-stream/intent-stream'
    """
    return f"/intent-stream/{app_id}"


def event_type(rule: str) -> str:
    """The ``ce_type`` of an alert fired by ``rule``.

    >>> event_type("intent_threshold")
    'io.intent-stream.alert.intent_threshold'
    """
    return TYPE_PREFIX + rule


def cloudevent_headers(alert: Mapping[str, Any], *, source: str) -> list[tuple[str, bytes]]:
    """Kafka headers for ``alert`` in CloudEvents 1.0 binary mode, plus ``alert_id``.

    ``ce_id`` is the alert's deterministic id, so a replay publishes the same id again and
    consumers de-duplicate on it; ``ce_time`` is the alert's event time, not wall time, for
    the same reason.
    """
    aid = str(alert["alert_id"])
    pairs = [
        ("alert_id", aid),
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", aid),
        ("ce_type", event_type(str(alert.get("rule") or "alert"))),
        ("ce_source", source),
        ("ce_time", str(alert["event_time"])),
        ("ce_subject", str(alert["account_id"])),
        ("content-type", CONTENT_TYPE),
    ]
    return [(k, v.encode()) for k, v in pairs]


@dataclass(frozen=True, slots=True)
class ReceivedAlert:
    """An alert read back from Kafka: its payload and its CloudEvents attributes."""

    alert: dict[str, Any]
    attributes: dict[str, str]

    @property
    def alert_id(self) -> str:
        return self.attributes["id"]

    @property
    def account_id(self) -> str:
        return str(self.alert.get("account_id") or self.attributes.get("subject", ""))

    @classmethod
    def from_record(
        cls, value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None
    ) -> ReceivedAlert:
        """Parse a record's value and headers; raise :class:`InvalidAlert` if it is no alert.

        >>> ReceivedAlert.from_record(b"[1]", [])
        Traceback (most recent call last):
        ...
        intent_stream.alerts.envelope.InvalidAlert: value is not a JSON object
        """
        try:
            alert = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            raise InvalidAlert("value is not JSON") from None
        if not isinstance(alert, dict):
            raise InvalidAlert("value is not a JSON object")
        attributes: dict[str, str] = {}
        for key, raw in headers or ():
            if key.startswith("ce_") and raw is not None:
                attributes[key[3:]] = raw.decode(errors="replace")
        for attribute, name in _FROM_PAYLOAD.items():
            if attribute not in attributes and alert.get(name) is not None:
                attributes[attribute] = str(alert[name])
        attributes.setdefault("specversion", SPEC_VERSION)
        attributes.setdefault("type", event_type(str(alert.get("rule") or "alert")))
        attributes.setdefault("source", "/intent-stream")
        if not attributes.get("id"):
            raise InvalidAlert("no alert id (ce_id header or alert_id field)")
        return cls(alert=alert, attributes=attributes)

    def cloud_event(self) -> dict[str, Any]:
        """The alert as a CloudEvents 1.0 JSON (structured-mode) object, ``data`` = the alert.

        >>> ReceivedAlert({"x": 1}, {"id": "a1", "specversion": "1.0"}).cloud_event()
        {'id': 'a1', 'specversion': '1.0', 'datacontenttype': 'application/json', 'data': {'x': 1}}
        """
        return {**self.attributes, "datacontenttype": CONTENT_TYPE, "data": self.alert}


def _score(alert: Mapping[str, Any]) -> str:
    score = alert.get("intent_score")
    return f"{score:5.1f}" if isinstance(score, int | float) else "    ?"


def human_line(received: ReceivedAlert) -> str:
    """One line for people: event time, account, score, rules, stage, owner, reasons.

    Parts an alert lacks (alerts written before they existed) are left out.

    >>> r = ReceivedAlert({"account_id": "acme.com", "intent_score": 83.44,
    ...                    "reasons": ["requested a demo", "viewed pricing"]},
    ...                   {"id": "a1", "time": "2026-11-20T10:11:40.000Z"})
    >>> print(human_line(r))  # doctest: +NORMALIZE_WHITESPACE
    2026-11-20T10:11:40.000Z  acme.com  83.4  requested a demo; viewed pricing
    >>> r.alert.update(rules=["intent_threshold", "stage_entry"], stage="evaluation",
    ...                previous_stage="consideration", route={"owner": "sales-emea"})
    >>> print(human_line(r))  # doctest: +NORMALIZE_WHITESPACE
    2026-11-20T10:11:40.000Z  acme.com  83.4  [intent threshold + stage entry]
    consideration->evaluation  owner sales-emea  requested a demo; viewed pricing
    """
    alert = received.alert
    reasons = _reasons(alert.get("reasons"))
    when = received.attributes.get("time", "")
    parts = [f"{when:24}", f"{received.account_id:28}", _score(alert)]
    rules = alert.get("rules")
    if isinstance(rules, list) and rules:
        parts.append("[" + " + ".join(str(r).replace("_", " ") for r in rules) + "]")
    stage, before = alert.get("stage"), alert.get("previous_stage")
    if isinstance(stage, str):
        parts.append(f"{before}->{stage}" if isinstance(before, str) else stage)
    route = alert.get("route")
    if isinstance(route, dict) and route.get("owner"):
        parts.append(f"owner {route['owner']}")
    parts.append("; ".join(reasons) or "-")
    return "  ".join(parts)


def _reasons(value: Any) -> Sequence[str]:
    if not isinstance(value, list):
        return []
    return [str(r.get("text", "")) if isinstance(r, dict) else str(r) for r in value]
