"""What the scoring agent does with one Kafka record, as plain code.

:class:`AccountProcessor` takes a record's bytes and its partition/offset, applies the events to
per-account state held in any ``MutableMapping`` (a Faust table in the worker, a dict in tests),
scores every account the record touched and decides on hot-lead alerts. It returns what the
agent must send; it does no I/O itself.

Replays are harmless: each account's state remembers, per source, the offset of the last record
applied to it, and a record at or below that offset is skipped. The source of a record the
ingest agent forwarded is the raw partition it came from (its ``src``), so a raw record replayed
after an ingest crash is skipped too; a record written directly to the event topic is its own
source. Because the state and those offsets are written in the same table value, a crash
between them cannot split them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from intent_stream.events import Event, Rejected, decode_record, parse_event
from intent_stream.scoring import (
    OUTCOMES,
    AccountSignals,
    HotLeadPolicy,
    IntentModel,
    PolicyState,
    alert_id,
    classify,
)
from intent_stream.scoring.stages import StageMachine, StageState, StageTransition

__all__ = [
    "INTENT_RULE",
    "AccountProcessor",
    "AccountView",
    "DeadLetter",
    "OutgoingAlert",
    "RecordResult",
    "dump_event",
    "iso",
]

INTENT_RULE = "intent_threshold"
#: Outcomes that mean "this account bought or is buying" (positive label) or did not.
_POSITIVE = frozenset({"opportunity", "won"})
_NEGATIVE = frozenset({"lost"})


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected record or event: its bytes and why."""

    reason: str
    detail: str
    value: bytes | None


@dataclass(frozen=True, slots=True)
class OutgoingAlert:
    """A hot-lead alert to publish, keyed by account."""

    alert_id: str
    account_id: str
    value: bytes


@dataclass(frozen=True, slots=True)
class AccountView:
    """What the read model needs to render an account (see :meth:`AccountProcessor.render`)."""

    account_id: str
    score: float
    features: dict[str, float]
    events: int
    alerts: int
    event_time: float
    updated_at: float
    #: The account's stored stage state (see :meth:`AccountProcessor.stage_step`), if any.
    stage: dict[str, Any] | None = None


@dataclass(slots=True)
class RecordResult:
    """What processing one record produced."""

    alerts: list[OutgoingAlert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    snapshots: dict[str, AccountView] = field(default_factory=dict)
    applied: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    signals: Counter[str] = field(default_factory=Counter)
    #: Stage changes to publish on the stage-transitions topic, in event-time order per account.
    transitions: list[StageTransition] = field(default_factory=list)


def iso(ts: float) -> str:
    """Epoch seconds as an ISO-8601 UTC string with milliseconds.

    >>> iso(0)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class AccountProcessor:
    """Applies records to account state, scores the accounts and decides on alerts.

    ``model`` is shared by every account of the worker and learns online from outcome events;
    ``clock`` gives wall time for ``updated_at`` only (scores and alerts use event time).
    """

    def __init__(
        self,
        *,
        model: IntentModel,
        policy: HotLeadPolicy,
        clock: Callable[[], float] = time.time,
        top_reasons: int = 3,
        stages: StageMachine | None = None,
    ) -> None:
        self.model = model
        self.policy = policy
        self.clock = clock
        self.top_reasons = top_reasons
        self.stages = stages

    def process(
        self,
        table: MutableMapping[str, Any],
        *,
        value: bytes | None,
        partition: int,
        offset: int,
    ) -> RecordResult:
        """Apply one record; per-event problems dead-letter that event only."""
        result = RecordResult()
        try:
            raw_events, src = decode_record(value)
        except Rejected as exc:
            result.dead_letters.append(DeadLetter(exc.reason, exc.detail, value))
            return result
        by_account: dict[str, list[Event]] = {}
        for raw in raw_events:
            try:
                event = parse_event(raw)
            except Rejected as exc:
                result.dead_letters.append(DeadLetter(exc.reason, exc.detail, dump_event(raw)))
                continue
            by_account.setdefault(event.account_id, []).append(event)
        # Replay guard key: the raw partition for forwarded records, else this partition.
        guard = (f"r{src[0]}", src[1]) if src is not None else (f"e{partition}", offset)
        for account_id, events in by_account.items():
            self._apply(table, account_id, events, guard, result)
        return result

    def _apply(
        self,
        table: MutableMapping[str, Any],
        account_id: str,
        events: list[Event],
        guard: tuple[str, int],
        result: RecordResult,
    ) -> None:
        state = table.get(account_id)
        source, offset = guard
        applied: dict[str, int] = {}
        if state is not None:
            applied = state["off"]
            if offset <= applied.get(source, -1):
                result.skipped += len(events)
                return
            signals = AccountSignals.from_dict(state["signals"])
            policy_state = PolicyState.from_dict(state["policy"])
            n_events = int(state["events"])
        else:
            signals = AccountSignals()
            policy_state = PolicyState()
            n_events = 0
        now = float(state["event_time"]) if state is not None else events[0].ts
        for event in events:
            now = max(now, event.ts)
            self._learn_event(signals, event, result)
            result.applied[event.type] += 1
        n_events += len(events)
        x = signals.features(now)
        score = self.model.score_one(x)
        policy_state, fire = self.policy.decide(policy_state, score=score, ts=now)
        if fire:
            reasons = self.model.explain(x, top=self.top_reasons)
            result.alerts.append(
                self._alert(account_id, score, reasons, policy_state, now, n_events, state)
            )
        stage = self.stage_step(account_id, state, events, signals, score, now, result)
        table[account_id] = {
            "off": {**applied, source: offset},
            "signals": signals.to_dict(),
            "policy": policy_state.to_dict(),
            "events": n_events,
            "event_time": now,
            "score": round(score, 2),
            **({"stage": stage} if stage is not None else {}),
        }
        result.snapshots[account_id] = AccountView(
            account_id=account_id,
            score=score,
            features=x,
            events=n_events,
            alerts=policy_state.episode,
            event_time=now,
            updated_at=self.clock(),
            stage=stage,
        )

    def render(self, view: AccountView) -> dict[str, Any]:
        """The read-model snapshot of an account, with its reasons.

        Done when the snapshot is written, not per record: an account updated many times
        between two Redis flushes is explained once.
        """
        reasons = self.model.explain(view.features, top=self.top_reasons)
        return {
            "account_id": view.account_id,
            "intent_score": round(view.score, 1),
            "reasons": [{"text": r.text, "points": round(r.contribution, 1)} for r in reasons],
            "features": {k: round(v, 3) for k, v in view.features.items() if v},
            "events": view.events,
            "alerts": view.alerts,
            "last_event_at": iso(view.event_time),
            "updated_at": iso(view.updated_at),
            **self.render_stage(view),
        }

    def stage_step(
        self,
        account_id: str,
        previous: Mapping[str, Any] | None,
        events: list[Event],
        signals: AccountSignals,
        score: float,
        now: float,
        result: RecordResult,
    ) -> dict[str, Any] | None:
        """Run the stage machine on the account after scoring; return its new stage state.

        ``previous`` is the account's table value before this record; the transitions made
        go to ``result.transitions``.
        """
        if self.stages is None:
            return None
        stored = previous.get("stage") if previous is not None else None
        step = self.stages.step(
            StageState.from_dict(stored) if stored is not None else None,
            account_id=account_id,
            events=[(e.ts, e.body) for e in events],
            signals=signals,
            intent_score=score,
            now=now,
        )
        result.transitions.extend(step.transitions)
        return step.state.to_dict()

    def render_stage(self, view: AccountView) -> dict[str, Any]:
        """The stage, since when, and the last transitions, for the read model."""
        if self.stages is None or view.stage is None:
            return {}
        return self.stages.view(view.account_id, view.stage)

    def _learn_event(self, signals: AccountSignals, event: Event, result: RecordResult) -> None:
        body = event.body
        if event.type == "identify":
            traits = body.get("traits")
            traits = traits if isinstance(traits, dict) else {}
            signals.observe_person(
                person_id=event.person_id or "",
                ts=event.ts,
                role=_str_or_none(traits.get("role")),
                seniority=_str_or_none(traits.get("seniority")),
            )
            return
        if event.type == "track":
            outcome = OUTCOMES.get(str(body.get("event", "")))
            if outcome is not None:
                # Learn from what the account looked like just before the outcome.
                if outcome in _POSITIVE or outcome in _NEGATIVE:
                    self.model.learn_one(signals.features(event.ts), outcome in _POSITIVE)
                    result.labels[outcome] += 1
                return
        signal = classify(body)
        if signal is not None:
            signals.learn_one(signal=signal, ts=event.ts, person_id=event.person_id)
            result.signals[signal] += 1

    def _alert(
        self,
        account_id: str,
        score: float,
        reasons: list[Any],
        policy_state: PolicyState,
        now: float,
        n_events: int,
        previous: Mapping[str, Any] | None = None,
    ) -> OutgoingAlert:
        """The alert payload; ``previous`` is the account's table value before this record."""
        aid = alert_id(account_id, INTENT_RULE, policy_state.episode)
        payload = {
            "alert_id": aid,
            "account_id": account_id,
            "rule": INTENT_RULE,
            "intent_score": round(score, 1),
            "threshold": self.policy.enter,
            "episode": policy_state.episode,
            "reasons": [r.text for r in reasons if r.contribution > 0],
            "events": n_events,
            "event_time": iso(now),
            "since_last_alert": _since_last_alert(account_id, policy_state, now, previous),
        }
        return OutgoingAlert(aid, account_id, orjson.dumps(payload))


def _since_last_alert(
    account_id: str, policy_state: PolicyState, now: float, previous: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """What links this alert to the account's previous one (None for its first alert).

    Derived from the policy state the table already keeps (episode, last alert's event
    time); the previous alert's id is recomputed, being deterministic.
    """
    if previous is None or policy_state.episode < 2:
        return None
    last_ts = PolicyState.from_dict(previous["policy"]).last_alert_ts
    if last_ts is None:
        return None
    return {
        "alert_id": alert_id(account_id, INTENT_RULE, policy_state.episode - 1),
        "at": iso(last_ts),
        "hours": round((now - last_ts) / 3600, 1),
    }


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def dump_event(raw: Any) -> bytes:
    """An event's bytes for the dead-letter topic (JSON when possible)."""
    try:
        return orjson.dumps(raw)
    except TypeError:
        return repr(raw).encode()
