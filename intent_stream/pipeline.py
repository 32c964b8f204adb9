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

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from intent_stream.events import Event, Rejected, decode_record, parse_event
from intent_stream.marketing import dimensions
from intent_stream.privacy import ForgetRequest, is_forget
from intent_stream.scoring import (
    FEATURES,
    OUTCOMES,
    AccountSignals,
    DelayedLabels,
    FitModel,
    HotLeadPolicy,
    IntentModel,
    PolicyState,
    ProgressiveValidation,
    Reason,
    alert_id,
    classify,
    fit_band,
    fit_traits,
    topic_of,
)
from intent_stream.scoring.stages import StageMachine, StageState, StageTransition
from intent_stream.topics import partition_for

logger = logging.getLogger(__name__)

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
    signals: AccountSignals | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    #: The account's stored stage state (see :meth:`AccountProcessor.stage_step`), if any.
    stage: dict[str, Any] | None = None


@dataclass(slots=True)
class _Scoring:
    """One account's scoring state while a record is applied (see ``_open_scoring``)."""

    signals: AccountSignals
    pending: list[Any]  # delayed-label snapshots (DelayedLabels' list)
    traits: dict[str, Any]  # firmographics for the fit model
    at: float  # event time of the newest signal applied
    dirty: bool = False  # signals changed since the last snapshot


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
    #: Signals by (signal, channel, campaign, content type); campaigns not yet bounded.
    marketing: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    surges: int = 0
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

    ``model`` (intent) and ``fit`` are shared by every account of the worker and learn online:
    the intent model from delayed labels (``labels``: feature snapshots that an outcome, or
    the end of their horizon, labels), the fit model from won and lost deals. Each intent
    label is predicted before it is learned (``health``). ``clock`` gives wall time for
    ``updated_at`` only (scores and alerts use event time).
    """

    def __init__(
        self,
        *,
        model: IntentModel,
        policy: HotLeadPolicy,
        clock: Callable[[], float] = time.time,
        top_reasons: int = 3,
        labels: DelayedLabels | None = None,
        fit: FitModel | None = None,
        health: ProgressiveValidation | None = None,
        stages: StageMachine | None = None,
    ) -> None:
        self.model = model
        self.policy = policy
        self.clock = clock
        self.top_reasons = top_reasons
        self.labels = labels if labels is not None else DelayedLabels(features=FEATURES)
        self.fit = fit if fit is not None else FitModel()
        self.health = health if health is not None else ProgressiveValidation()
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
        if is_forget(value):
            return self.forget(table, value or b"", partition=partition)
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
        scoring = self._open_scoring(state, signals, now)
        for event in events:
            now = max(now, event.ts)
            self._learn_event(scoring, event, now, result)
            result.applied[event.type] += 1
        n_events += len(events)
        x = signals.features(now)
        self._snapshot(scoring, x, now)
        score = self.model.score_one(x)
        policy_state, fire = self.policy.decide(policy_state, score=score, ts=now)
        if fire:
            reasons = self.explain(x, signals, now)
            result.alerts.append(
                self._alert(
                    account_id, score, reasons, policy_state, now, n_events, state, scoring.traits
                )
            )
        stage = self.stage_step(
            account_id, state, events, signals, score, now, result, traits=scoring.traits
        )
        table[account_id] = {
            "off": {**applied, source: offset},
            "signals": signals.to_dict(),
            "policy": policy_state.to_dict(),
            "events": n_events,
            "event_time": now,
            "score": round(score, 2),
            **self._dump_scoring(scoring),
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
            signals=signals,
            traits=scoring.traits,
            stage=stage,
        )

    def forget(
        self, table: MutableMapping[str, Any], value: bytes, *, partition: int
    ) -> RecordResult:
        """Apply a forget control record (:mod:`intent_stream.privacy`): remove its people
        from the accounts ``partition`` owns, so each change lands in that partition's
        changelog. Idempotent; no alert is decided (forgetting is not activity)."""
        result = RecordResult()
        request = ForgetRequest.from_bytes(value)
        if request is None:
            result.dead_letters.append(
                DeadLetter("bad_control", "unreadable forget request", value)
            )
            return result
        for account_id, state in list(table.items()):
            if state is None or partition_for(account_id, request.partitions) != partition:
                continue
            signals = AccountSignals.from_dict(state["signals"])
            if not [p for p in request.people if signals.forget_person(p)]:
                continue
            now = float(state["event_time"])
            x = signals.features(now)
            score = self.model.score_one(x)
            table[account_id] = {**state, "signals": signals.to_dict(), "score": round(score, 2)}
            result.snapshots[account_id] = AccountView(
                account_id=account_id,
                score=score,
                features=x,
                events=int(state["events"]),
                alerts=PolicyState.from_dict(state["policy"]).episode,
                event_time=now,
                updated_at=self.clock(),
            )
        logger.info(
            "forget request %s: person removed from %d account(s) of partition %d",
            request.request_id,
            len(result.snapshots),
            partition,
        )
        return result

    def render(self, view: AccountView) -> dict[str, Any]:
        """The read-model snapshot of an account, with its reasons, fit and topics.

        Done when the snapshot is written, not per record: an account updated many times
        between two Redis flushes is explained once.
        """
        signals, now = view.signals, view.event_time
        reasons = (
            self.explain(view.features, signals, now)
            if signals is not None
            else self.model.explain(view.features, top=self.top_reasons)
        )
        fit_score = self.fit.score_one(view.traits)
        recent: dict[str, float] = {}
        topics: list[dict[str, Any]] = []
        if signals is not None:
            for name in signals.counts:
                count = signals.count(name, now)
                if count >= 0.05:
                    recent[name] = round(count, 2)
            topics = [{"topic": t, "surge": s} for t, s in signals.top_topics(now)]
        return {
            "account_id": view.account_id,
            "intent_score": round(view.score, 1),
            "reasons": [{"text": r.text, "points": round(r.contribution, 1)} for r in reasons],
            "fit_score": round(fit_score, 1),
            "fit_band": fit_band(fit_score),
            "fit_reasons": [r.text for r in self.fit.explain(view.traits, top=self.top_reasons)],
            "traits": view.traits,
            "signals": recent,
            "topics": topics,
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
        *,
        traits: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Run the stage machine on the account after scoring; return its new stage state.

        ``previous`` is the account's table value before this record; the transitions made
        go to ``result.transitions``. ``traits`` (the account's firmographics) give the fit
        score that stage rules on ``fit`` compare with.
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
            fit=self.fit.score_one(traits or {}),
        )
        result.transitions.extend(step.transitions)
        return step.state.to_dict()

    def render_stage(self, view: AccountView) -> dict[str, Any]:
        """The stage, since when, and the last transitions, for the read model."""
        if self.stages is None or view.stage is None:
            return {}
        return self.stages.view(view.account_id, view.stage)

    def explain(self, x: Mapping[str, float], signals: AccountSignals, now: float) -> list[Reason]:
        """The intent score's reasons; a topic surge is named after its topic."""
        phrases: dict[str, str] = {}
        if x.get("topic_surge"):
            best = signals.surge.strongest(signals.topics, now, since=signals.first_seen)
            if best is not None:
                phrases["topic_surge"] = f"surging interest in {best[0]} (surge {best[1]:.0f})"
        return self.model.explain(x, top=self.top_reasons, phrases=phrases)

    # -- delayed labels, topics and fit traits (issue 4) -----------------------------------
    def _open_scoring(
        self, state: Mapping[str, Any] | None, signals: AccountSignals, now: float
    ) -> _Scoring:
        if state is None:
            return _Scoring(signals=signals, pending=[], traits={}, at=now)
        return _Scoring(
            signals=signals,
            pending=list(state.get("snap", ())),
            traits=dict(state.get("traits", {})),
            at=now,
        )

    @staticmethod
    def _dump_scoring(scoring: _Scoring) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if scoring.pending:
            out["snap"] = scoring.pending
        if scoring.traits:
            out["traits"] = scoring.traits
        return out

    def _snapshot(self, scoring: _Scoring, x: Mapping[str, float], ts: float) -> None:
        """Keep the features of an account whose signals changed, for a delayed label."""
        if scoring.dirty:
            self.labels.observe(scoring.pending, x, ts)
            scoring.dirty = False

    def _learn_labels(self, labelled: list[Any], kind: str, result: RecordResult) -> None:
        """Predict each label before learning it (progressive validation), then learn it."""
        for x, y in labelled:
            self.health.update(self.model.score_one(x) / 100.0, y)
            self.model.learn_one(x, y)
            result.labels[kind] += 1

    def _learn_event(
        self, scoring: _Scoring, event: Event, now: float, result: RecordResult
    ) -> None:
        signals, body = scoring.signals, event.body
        if scoring.pending and self.labels.due(scoring.pending, now):
            self._learn_labels(self.labels.expire(scoring.pending, now), "expired", result)
        if event.type in ("identify", "group"):
            traits = body.get("traits")
            traits = traits if isinstance(traits, dict) else {}
            scoring.traits.update(fit_traits(body))
            if event.type == "identify":
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
                self._learn_outcome(scoring, outcome, event.ts, result)
                return
        signal = classify(body)
        if signal is not None:
            spacing = self.labels.spacing_s
            if scoring.dirty and event.ts // spacing > scoring.at // spacing:
                # A new slot of activity: keep the state the previous slot ended with.
                self._snapshot(scoring, signals.features(scoring.at), scoring.at)
            signals.learn_one(signal=signal, ts=event.ts, person_id=event.person_id)
            topic = topic_of(body)
            if topic is not None and signals.learn_topic(topic, event.ts):
                result.surges += 1
            scoring.at = max(scoring.at, event.ts)
            scoring.dirty = True
            result.signals[signal] += 1
            result.marketing[(signal, *dimensions(body, signal))] += 1

    def _learn_outcome(
        self, scoring: _Scoring, outcome: str, ts: float, result: RecordResult
    ) -> None:
        if outcome not in _POSITIVE and outcome not in _NEGATIVE:
            return
        # What the account looked like just before the outcome is a snapshot too.
        self._snapshot(scoring, scoring.signals.features(scoring.at), scoring.at)
        labelled = self.labels.outcome(scoring.pending, ts, positive=outcome in _POSITIVE)
        self._learn_labels(labelled, outcome, result)
        if outcome in ("won", "lost"):
            self.fit.learn_one(scoring.traits, outcome == "won")

    def _alert(
        self,
        account_id: str,
        score: float,
        reasons: list[Any],
        policy_state: PolicyState,
        now: float,
        n_events: int,
        previous: Mapping[str, Any] | None = None,
        traits: Mapping[str, Any] | None = None,
    ) -> OutgoingAlert:
        """The alert payload; ``previous`` is the account's table value before this record."""
        aid = alert_id(account_id, INTENT_RULE, policy_state.episode)
        fit_score = self.fit.score_one(traits or {})
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
            "fit_score": round(fit_score, 1),
            "fit_band": fit_band(fit_score),
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
