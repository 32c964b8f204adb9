"""Posting alerts to a webhook: message bodies, what an answer means, when to try again.

Everything but :func:`post` is pure and unit-tested without a network:

- :func:`slack_message` / :func:`webhook_body` render an alert (Slack Block Kit, or the
  CloudEvents JSON object);
- :func:`classify` says whether an attempt delivered the alert, should be retried
  (timeouts, connection errors, 408, 429, 5xx) or is refused for good (any other answer, whose
  alert goes to the alerts dead-letter topic);
- :func:`backoff_delay` is the capped exponential back-off with jitter between retries.

>>> classify(Attempt(status=200)), classify(Attempt(status=503)), classify(Attempt(status=400))
('delivered', 'retry', 'dead_letter')
"""

from __future__ import annotations

import email.utils
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any, Literal

import orjson

from intent_stream import __version__
from intent_stream.alerts.envelope import ReceivedAlert, _reasons

__all__ = [
    "FORMATS",
    "Attempt",
    "Format",
    "Verdict",
    "backoff_delay",
    "classify",
    "failure_kind",
    "post",
    "slack_message",
    "webhook_body",
]

Format = Literal["slack", "json"]
FORMATS: tuple[Format, ...] = ("slack", "json")
Verdict = Literal["delivered", "retry", "dead_letter"]

#: Statuses that mean "not now" rather than "never": request timeout and rate limiting.
_RETRY_4XX = frozenset({408, 429})
_MAX_REASONS = 10
_MAX_LIST = 5
_DETAIL_CHARS = 200


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one POST: an HTTP status, or a transport error and no status."""

    status: int | None = None
    error: Literal["timeout", "connection"] | None = None
    retry_after: float | None = None
    detail: str = ""


def classify(attempt: Attempt) -> Verdict:
    """What to do after ``attempt``.

    2xx delivered; no answer (timeout, refused, reset), 408, 429 and 5xx are retried, since
    the endpoint may recover; any other status (3xx, 4xx) means this payload will never be
    accepted, so the alert is dead-lettered and the forwarder moves on.

    >>> [classify(Attempt(status=s)) for s in (204, 408, 429, 500, 302, 404)]
    ['delivered', 'retry', 'retry', 'retry', 'dead_letter', 'dead_letter']
    >>> classify(Attempt(error="timeout"))
    'retry'
    """
    status = attempt.status
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    if status >= 500 or status in _RETRY_4XX:
        return "retry"
    return "dead_letter"


def failure_kind(attempt: Attempt) -> str:
    """A bounded label for a failed attempt (metrics): timeout, connection, http_NNN/5xx.

    >>> [failure_kind(a) for a in (Attempt(error="timeout"), Attempt(status=503),
    ...                             Attempt(status=429), Attempt(status=400))]
    ['timeout', 'http_5xx', 'http_429', 'http_4xx']
    """
    if attempt.status is None:
        return attempt.error or "connection"
    if attempt.status in _RETRY_4XX:
        return f"http_{attempt.status}"
    if attempt.status >= 500:
        return "http_5xx"
    if attempt.status >= 400:
        return "http_4xx"
    return "http_other"


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 60.0,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    "Equal jitter": the ceiling ``min(cap, base * 2**attempt)`` doubles per retry; the delay
    is drawn between half the ceiling and the ceiling, so many forwarders that failed
    together do not retry in lockstep, and none retries at once. A server's ``Retry-After``
    raises the delay to what it asked for, still capped at ``cap``.

    >>> [backoff_delay(n, base=1, cap=10, rand=lambda: 1.0) for n in range(6)]
    [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    >>> backoff_delay(0, base=1, cap=10, rand=lambda: 0.0)
    0.5
    >>> backoff_delay(0, base=1, cap=10, retry_after=7, rand=lambda: 0.0)
    7.0
    """
    ceiling = min(cap, base * 2.0 ** min(attempt, 62))
    delay = ceiling / 2 + rand() * ceiling / 2
    if retry_after is not None:
        delay = max(delay, float(min(cap, retry_after)))
    return delay


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if unusable.

    >>> parse_retry_after("12")
    12.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0)
    10.0
    >>> parse_retry_after("soon") is None
    True
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _since_last(alert: Mapping[str, Any]) -> str:
    since = alert.get("since_last_alert")
    if not isinstance(since, dict):
        return "first alert for this account"
    hours = since.get("hours")
    ago = f"{hours:.1f} h after" if isinstance(hours, int | float) else "after"
    return f"{ago} the previous alert ({since.get('at', '?')})"


def _news(alert: Mapping[str, Any]) -> list[str]:
    """What changed since the account's previous alert, one line per kind of change."""
    since = alert.get("since_last_alert")
    if not isinstance(since, dict):
        return []
    out: list[str] = []
    score = since.get("intent_score")
    if isinstance(score, dict) and isinstance(score.get("change"), int | float):
        out.append(f"intent score {score['then']:g} → {score['now']:g} ({score['change']:+.1f})")
    stage = since.get("stage")
    if isinstance(stage, dict) and stage.get("changed"):
        out.append(f"stage {stage.get('then') or 'none'} → {stage.get('now') or 'none'}")
    signals = since.get("new_signals")
    if isinstance(signals, list) and signals:
        out.append("since then: " + ", ".join(str(s) for s in signals[:6]))
    topics = since.get("new_topics")
    if isinstance(topics, list) and topics:
        out.append("newly surging topics: " + ", ".join(str(t) for t in topics))
    people = since.get("people")
    if isinstance(people, dict) and isinstance(people.get("now"), int):
        then = people.get("then")
        size = f"{then} → {people['now']}" if isinstance(then, int) else str(people["now"])
        active = people.get("active") or []
        who = f"; active since: {', '.join(str(p) for p in active)}" if active else ""
        out.append(f"people engaged {size}{who}")
    return out


def _people(alert: Mapping[str, Any]) -> list[str]:
    people = alert.get("people")
    if not isinstance(people, list):
        return []
    out = []
    for person in people[:_MAX_LIST]:
        if not isinstance(person, dict):
            continue
        role = person.get("role") or ("senior" if person.get("senior") else "")
        senior = " (senior)" if person.get("senior") and person.get("role") else ""
        label = f"{person.get('id', '?')}" + (f": {role}{senior}" if role else "")
        out.append(f"{label}, last active {str(person.get('last_seen', '?'))[:16]}")
    return out


def _activities(alert: Mapping[str, Any]) -> list[str]:
    items = alert.get("activities")
    if not isinstance(items, list):
        return []
    out = []
    for item in items[:_MAX_LIST]:
        if isinstance(item, dict):
            who = f" ({item['person']})" if item.get("person") else ""
            out.append(f"{str(item.get('at', '?'))[:16]} {item.get('text', item.get('type'))}{who}")
    return out


def _stage(alert: Mapping[str, Any]) -> str | None:
    stage, before = alert.get("stage"), alert.get("previous_stage")
    if not isinstance(stage, str):
        return None
    return f"{before} → {stage}" if isinstance(before, str) else stage


def _owner(alert: Mapping[str, Any]) -> str | None:
    route = alert.get("route")
    if not isinstance(route, dict) or not route.get("owner"):
        return None
    how = "default for the region" if route.get("matched") == "default" else route.get("matched")
    return f"{route['owner']} ({how})" if how else str(route["owner"])


def _bullets(title: str, lines: list[str]) -> dict[str, Any]:
    text = _clip(f"*{title}*\n" + "\n".join(f"• {_mrkdwn(line)}" for line in lines), 3000)
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def slack_message(received: ReceivedAlert) -> dict[str, Any]:
    """A Slack incoming-webhook message (``text`` fallback plus Block Kit ``blocks``).

    Fields an alert lacks (alerts written before they existed) are left out.

    >>> r = ReceivedAlert({"account_id": "acme.com", "intent_score": 83.4, "threshold": 70.0,
    ...                    "rule": "intent_threshold", "reasons": ["requested a demo"]},
    ...                   {"id": "a1", "time": "2026-11-20T10:11:40.000Z"})
    >>> m = slack_message(r)
    >>> m["text"]
    'Hot lead: acme.com, intent score 83.4 (threshold 70)'
    >>> [b["type"] for b in m["blocks"]]
    ['header', 'section', 'section', 'context']
    >>> r.alert.update(triggers=["entered evaluation (requested a demo)"], stage="evaluation",
    ...                route={"owner": "sales-emea", "matched": "default"},
    ...                people=[{"id": "u-1", "role": "VP Sales", "senior": True}])
    >>> m = slack_message(r)
    >>> m["text"]
    'Hot lead: acme.com, intent score 83.4 (threshold 70): entered evaluation (requested a demo)'
    >>> len(m["blocks"]), m["blocks"][1]["fields"][-1]["text"].splitlines()
    (6, ['*Owner*', 'sales-emea (default for the region)'])
    """
    alert = received.alert
    account = received.account_id
    score = alert.get("intent_score")
    score_text = f"{score:.1f}" if isinstance(score, int | float) else "?"
    threshold = alert.get("threshold")
    limit = f" (threshold {threshold:g})" if isinstance(threshold, int | float) else ""
    rules = alert.get("rules")
    if not isinstance(rules, list) or not rules:
        rules = [alert.get("rule") or "alert"]
    rule = ", ".join(str(r).replace("_", " ") for r in rules)
    triggers = [str(t) for t in alert.get("triggers") or [] if t][:_MAX_LIST]
    reasons = [r for r in _reasons(alert.get("reasons")) if r][:_MAX_REASONS]
    fields = [
        f"*Account*\n{_mrkdwn(_clip(account, 200))}",
        f"*Intent score*\n{score_text} / 100{limit}",
        f"*Rule*\n{_mrkdwn(rule)}",
        f"*What is new*\n{_mrkdwn(_since_last(alert))}",
    ]
    fit = alert.get("fit_score")
    if isinstance(fit, int | float):
        fields.append(f"*Fit*\n{fit:.1f} ({_mrkdwn(str(alert.get('fit_band', '?')))})")
    stage = _stage(alert)
    if stage is not None:
        fields.append(f"*Stage*\n{_mrkdwn(_clip(stage, 200))}")
    owner = _owner(alert)
    if owner is not None:
        fields.append(f"*Owner*\n{_mrkdwn(_clip(owner, 300))}")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(f"Hot lead: {account}", 150)},
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    for title, lines in (
        ("Why now", triggers),
        ("Since the last alert", _news(alert)),
        ("Why", reasons),
        ("People", _people(alert)),
        ("Key activities", _activities(alert)),
    ):
        if lines:
            blocks.append(_bullets(title, lines))
    footer = f"event time {received.attributes.get('time', '?')} · alert {received.alert_id}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(footer)}]})
    why_now = f": {triggers[0]}" if triggers else ""
    text = f"Hot lead: {account}, intent score {score_text}{limit}{why_now}"
    return {"text": _clip(text, 3000), "blocks": blocks}


def webhook_body(received: ReceivedAlert, fmt: Format) -> tuple[bytes, str]:
    """The request body and its ``Content-Type`` for ``fmt``.

    ``json`` sends the CloudEvents 1.0 structured-mode object (attributes + ``data``), so a
    receiver can de-duplicate on ``source`` + ``id``.

    >>> body, ctype = webhook_body(ReceivedAlert({"x": 1}, {"id": "a1"}), "json")
    >>> ctype, orjson.loads(body)["data"]
    ('application/cloudevents+json', {'x': 1})
    """
    if fmt == "json":
        return orjson.dumps(received.cloud_event()), "application/cloudevents+json"
    return orjson.dumps(slack_message(received)), "application/json"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report redirects as answers instead of following them (urllib would turn a POST
    into a body-less GET on 301/302/303, which is never what a webhook wants)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(
    url: str,
    body: bytes,
    *,
    content_type: str,
    idempotency_key: str,
    timeout: float,
) -> Attempt:
    """POST ``body`` to ``url`` once; never raises for HTTP or network failures.

    ``Idempotency-Key`` carries the alert id, so a receiver can drop the one re-post the
    forwarder may make after a crash (see README, delivery guarantees).
    """
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": content_type,
            "Idempotency-Key": idempotency_key,
            "User-Agent": f"intent-stream/{__version__}",
        },
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            return Attempt(status=response.status)
    except urllib.error.HTTPError as exc:
        detail = ""
        try:
            detail = exc.read(_DETAIL_CHARS * 4).decode(errors="replace")
        except (OSError, HTTPException):
            pass
        finally:
            exc.close()
        return Attempt(
            status=exc.code,
            retry_after=parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None),
            detail=_clip(" ".join(detail.split()) or str(exc.reason), _DETAIL_CHARS),
        )
    except urllib.error.URLError as exc:
        timed_out = isinstance(exc.reason, TimeoutError | socket.timeout)
        return Attempt(error="timeout" if timed_out else "connection", detail=str(exc.reason))
    except TimeoutError as exc:
        return Attempt(error="timeout", detail=str(exc) or "timed out")
    except (OSError, HTTPException) as exc:
        return Attempt(error="connection", detail=type(exc).__name__)
