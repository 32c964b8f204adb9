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

import functools
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from intent_stream.events import Event, Rejected, decode_record, parse_event
from intent_stream.marketing import dimensions
from intent_stream.privacy import ForgetRequest, is_forget
from intent_stream.scoring import (
    FEATURES,
    KEY_ACTIVITIES,
    OUTCOMES,
    RULE_INTENT,
    AccountSignals,
    AlertDecision,
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
from intent_stream.scoring.isotime import iso_ms
from intent_stream.scoring.stages import (
    StageMachine,
    StageState,
    StageTransition,
)
from intent_stream.settings import DECISIONS
from intent_stream.tables import put
from intent_stream.topics import partition_for

logger = logging.getLogger(__name__)

__all__ = [
    "INTENT_RULE",
    "AccountProcessor",
    "AccountView",
    "BatchRecord",
    "DeadLetter",
    "OutgoingAlert",
    "RecordResult",
    "chunked",
    "dump_event",
    "iso",
]

INTENT_RULE = RULE_INTENT
#: People and key activities an alert lists at most.
_ALERT_PEOPLE = 5
_ALERT_ACTIVITIES = 5
#: Outcomes that mean "this account bought or is buying" (positive label) or did not.
_POSITIVE = frozenset({"opportunity", "won"})
_NEGATIVE = frozenset({"lost"})
#: Distinct trait sets whose fit score and reasons are kept (see ``AccountProcessor._fit_of``).
_FIT_CACHE = 4096


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected record or event: its bytes and why."""

    reason: str
    detail: str
    value: bytes | None
    #: The index, in the batch given to :meth:`AccountProcessor.process_batch`, of the
    #: record it came from (0 for a single record).
    record: int = 0


@dataclass(frozen=True, slots=True)
class OutgoingAlert:
    """A hot-lead alert to publish, keyed by account."""

    alert_id: str
    account_id: str
    value: bytes
    #: The alert's primary rule, and the event-time seconds since the account's previous
    #: alert (None for its first), for the metrics.
    rule: str = INTENT_RULE
    interval: float | None = None


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
    #: The intent prior's points per feature of ``features`` (``IntentModel.score_explained``),
    #: so that rendering does not compute them again; None: computed when rendered.
    contributions: dict[str, float] | None = None


@dataclass(slots=True)
class _Scoring:
    """One account's scoring state while a record is applied (see ``_open_scoring``)."""

    signals: AccountSignals
    pending: list[Any]  # delayed-label snapshots (DelayedLabels' list)
    traits: dict[str, Any]  # firmographics for the fit model
    at: float  # event time of the newest signal applied
    dirty: bool = False  # signals changed since the last snapshot
    contributions: dict[str, float] | None = None  # the prior's points, once scored


#: A record of the account topic as :meth:`AccountProcessor.process_batch` takes it:
#: ``(value, partition, offset)``.
BatchRecord = tuple[bytes | None, int, int]


def chunked(records: Sequence[BatchRecord], max_bytes: int) -> list[Sequence[BatchRecord]]:
    """``records`` cut, in order, into runs of at most ``max_bytes`` of values (a record
    larger than that is a run of its own), so that a batch's decoded events stay bounded.

    >>> [[o for _, _, o in run] for run in chunked([(b"x" * 6, 0, o) for o in range(5)], 12)]
    [[0, 1], [2, 3], [4]]
    """
    runs: list[Sequence[BatchRecord]] = []
    start, size = 0, 0
    for i, (value, _, _) in enumerate(records):
        n = len(value) if value else 0
        if size and size + n > max_bytes:
            runs.append(records[start:i])
            start, size = i, 0
        size += n
    if start < len(records):
        runs.append(records[start:])
    return runs


@dataclass(slots=True)
class _Live:
    """An account while a batch is applied: its state decoded once, updated record by
    record, written once (see :meth:`AccountProcessor.process_batch`)."""

    account_id: str
    partition: int  # of its records: the changelog partition its state is written to
    state: dict[str, Any] | None  # the table value before the batch
    seen: dict[str, int]  # replay guard: last applied offset per source
    scoring: _Scoring
    policy: PolicyState
    events: int
    now: float
    stage: dict[str, Any] | None  # the stored stage state before the batch
    #: Whether a record of the batch was applied to it (not only replays).
    applied: bool = False
    #: The stage state as the last applied record left it (see ``stage_step``).
    stage_state: StageState | None = None
    #: The last record's features and score, for the read model.
    x: dict[str, float] = field(default_factory=dict)
    score: float = 0.0
    #: Its events of the batch not yet applied (decisions per batch: all of them, applied
    #: together when the batch is written).
    pending: list[Event] = field(default_factory=list)


def _counter() -> Counter[Any]:
    """An empty ``Counter``, without ``Counter.__init__``'s call to ``update()`` (which has
    nothing to add): a record's result starts six of them.

    >>> c = _counter(); c["page"] += 1; c
    Counter({'page': 1})
    """
    return Counter.__new__(Counter)


@dataclass(slots=True)
class RecordResult:
    """What processing one record produced."""

    alerts: list[OutgoingAlert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    snapshots: dict[str, AccountView] = field(default_factory=dict)
    #: Accounts a replayed record touched, as their state stands: for the read model only
    #: (not scored again, no latency to observe).
    refreshed: dict[str, AccountView] = field(default_factory=dict)
    applied: Counter[str] = field(default_factory=_counter)
    skipped: int = 0
    labels: Counter[str] = field(default_factory=_counter)
    signals: Counter[str] = field(default_factory=_counter)
    #: Signals by (signal, channel, campaign, content type); campaigns not yet bounded.
    marketing: Counter[tuple[str, str, str, str]] = field(default_factory=_counter)
    surges: int = 0
    #: Stage changes to publish on the stage-transitions topic, in event-time order per account.
    transitions: list[StageTransition] = field(default_factory=list)
    #: Alert rules that fired, by (rule, outcome): alerted, cooldown or weak_fit.
    alert_triggers: Counter[tuple[str, str]] = field(default_factory=_counter)


@functools.lru_cache(maxsize=8192)
def iso(ts: float) -> str:
    """Epoch seconds as an ISO-8601 UTC string with milliseconds.

    Cached: alerts and snapshots format the same times again (a person's last activity,
    each key activity's time) for as long as the account is active.

    >>> iso(0)
    '1970-01-01T00:00:00.000Z'
    """
    return iso_ms(ts)


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
        decisions: str = "record",
    ) -> None:
        if decisions not in DECISIONS:
            raise ValueError(f"decisions must be one of {DECISIONS} (got {decisions!r})")
        self.model = model
        #: "record": an account is scored and decided on after each record; "batch": once
        #: per batch (see process_batch).
        self.decisions = decisions
        self.policy = policy
        self.clock = clock
        self.top_reasons = top_reasons
        self.labels = labels if labels is not None else DelayedLabels(features=FEATURES)
        self.fit = fit if fit is not None else FitModel()
        self.health = health if health is not None else ProgressiveValidation()
        self.stages = stages
        # Fit score and reasons by the traits' JSON, for the fit model (and its number of
        # labels, and the reasons shown) they were computed with: see _fit_of.
        self._fit_cache: dict[bytes, list[Any]] = {}
        self._fit_cached_for: tuple[FitModel, int, int] | None = None
        self._stages_read_fit = stages is not None and any(
            clause.measure == "fit"
            for spec in stages.model.stages
            for rule in (*spec.enter, *spec.exit)
            for clause in rule.clauses
        )

    def process(
        self,
        table: MutableMapping[str, Any],
        *,
        value: bytes | None,
        partition: int,
        offset: int,
    ) -> RecordResult:
        """Apply one record; per-event problems dead-letter that event only."""
        return self.process_batch(table, [(value, partition, offset)])

    def process_batch(
        self, table: MutableMapping[str, Any], records: Sequence[BatchRecord]
    ) -> RecordResult:
        """Apply records of the account topic, each ``(value, partition, offset)``, at once.

        Each account a batch touches is read and decoded once, written once (one changelog
        message, in the partition of its records) and gives one read-model view. Records
        an account's replay guard has seen are skipped, whether applied before the batch
        or earlier in it. A forget record first writes what the records before it did.
        Dead letters carry the index of their record in ``records``.

        When an account is scored and decided on (score, stage step, alert decision)
        follows ``decisions``:

        - ``"record"``: after each record, exactly as :meth:`process` would, so the
          outputs (state, alerts, transitions, labels and the shared models' learning) are
          those of the records applied one by one, whatever the batching.
        - ``"batch"``: once, after all its events in the batch (up to a forget record),
          applied in order. An account with events in many records of a batch costs one
          update instead of one per record; what a batch decides depends on how the
          records were batched, which a replay may do differently, and the stage machine
          makes at most one evidence move per update.

        Either way every event is applied once: an account's event count and replay guard
        end the same.
        """
        result = RecordResult()
        live: dict[str, _Live] = {}
        for index, (value, partition, offset) in enumerate(records):
            if is_forget(value):
                self._write(table, live, result)
                live = {}
                self.forget(table, value or b"", partition=partition, result=result, record=index)
                continue
            try:
                raw_events, src = decode_record(value)
            except Rejected as exc:
                result.dead_letters.append(DeadLetter(exc.reason, exc.detail, value, index))
                continue
            # Replay guard keys: the raw partition of each run of forwarded events, else
            # this partition for the whole record.
            runs = (
                [(f"r{p}", at, n) for p, at, n in src]
                if src
                else [(f"e{partition}", offset, len(raw_events))]
            )
            self._apply_runs(table, live, raw_events, runs, partition, index, result)
        self._write(table, live, result)
        return result

    def _apply_runs(
        self,
        table: MutableMapping[str, Any],
        live: dict[str, _Live],
        raw_events: list[Any],
        runs: list[tuple[str, int, int]],
        partition: int,
        index: int,
        result: RecordResult,
    ) -> None:
        """Apply one record, its events in ``runs`` of ``(guard source, offset, events)``:
        one run for a record written directly or forwarded from one raw record, several for
        one the ingest agent gathered from several raw records.

        Each account's events in it are applied together, less those its replay guard has
        seen: an event is skipped when the record it came from is at or below the last one
        applied to the account from that source before this record. After an ingest crash,
        the events of raw records forwarded before it come again, gathered with others; only
        the others are applied.
        """
        by_account: dict[str, list[tuple[str, int, Event]]] = {}
        position = 0
        for source, at, n in runs:
            for raw in raw_events[position : position + n]:
                event = _parsed(raw, index, result)
                if event is not None:
                    by_account.setdefault(event.account_id, []).append((source, at, event))
            position += n
        for account_id, items in by_account.items():
            account = live.get(account_id)
            if account is None:
                first = [items[0][2]]
                live[account_id] = account = self._open(table, account_id, partition, first)
            seen = account.seen
            before = {source: seen.get(source, -1) for source, _, _ in items}
            events = []
            for source, at, event in items:
                if at <= before[source]:
                    result.skipped += 1
                    continue
                events.append(event)
                if at > seen.get(source, -1):
                    seen[source] = at
            if not events:
                continue
            if self.decisions == "batch":
                account.pending += events
            else:
                self._apply(account, events, result)

    def _open(
        self,
        table: MutableMapping[str, Any],
        account_id: str,
        partition: int,
        events: list[Event],
    ) -> _Live:
        state = table.get(account_id)
        if state is None:
            signals, now = AccountSignals(), events[0].ts
            return _Live(
                account_id, partition, None, {}, self._open_scoring(None, signals, now),
                PolicyState(), 0, now, None,
            )  # fmt: skip
        now = float(state["event_time"])
        signals = AccountSignals.from_dict(state["signals"])
        return _Live(
            account_id,
            partition,
            state,
            dict(state["off"]),
            self._open_scoring(state, signals, now),
            PolicyState.from_dict(state["policy"]),
            int(state["events"]),
            now,
            state.get("stage"),
        )

    def _apply(self, account: _Live, events: list[Event], result: RecordResult) -> None:
        """Apply ``events`` of ``account`` (one record's, or with decisions per batch the
        batch's), then score it and decide."""
        scoring, account_id = account.scoring, account.account_id
        signals = scoring.signals
        if account.applied:
            # A record before this one in the batch: continue from the account as that
            # record left it in the table (with to_dict's rounding), as a record applied
            # alone would; settle() is that decoding, done in place.
            signals.settle()
            scoring.at, scoring.dirty, scoring.contributions = account.now, False, None
            account.policy = _settled(account.policy)
            stage_state = account.stage_state
            if stage_state is not None:
                stage_state.settle()
        elif account.stage is not None and self.stages is not None:
            stage_state = StageState.from_dict(account.stage)
        else:
            stage_state = None
        # The topics surging before this record: a surge that starts in it may alert.
        surging = {t for t, cell in signals.topics.items() if cell[3]} if signals.topics else None
        now = account.now
        for event in events:
            now = max(now, event.ts)
            self._learn_event(scoring, event, now, result)
            result.applied[event.type] += 1
        account.events += len(events)
        x = signals.features(now)
        self._snapshot(scoring, x, now)
        score, scoring.contributions = self.model.score_explained(x)
        made = len(result.transitions)
        stage_state = self.stage_step(
            account_id, stage_state, events, signals, score, now, result, traits=scoring.traits
        )
        account.policy = self.alert_step(
            account_id,
            surging,
            account.policy,
            scoring,
            x,
            score,
            now,
            account.events,
            stage_state,
            result,
            transitions=result.transitions[made:],
        )
        account.stage_state, account.now, account.x, account.score = stage_state, now, x, score
        account.applied = True

    def _write(
        self, table: MutableMapping[str, Any], live: Mapping[str, _Live], result: RecordResult
    ) -> None:
        """Decide on the accounts with pending events (decisions per batch), then write
        each account of a batch once, and queue its read-model view."""
        for account in live.values():
            if account.pending:
                self._apply(account, account.pending, result)
                account.pending = []
        for account_id, account in live.items():
            if not account.applied:  # every record of it was a replay
                if account.state is not None:
                    # A replay follows a crash, which can come between applying a record
                    # and writing the account's snapshot to Redis: write it again.
                    result.refreshed[account_id] = self.view_of(account_id, account.state)
                continue
            scoring, stage_state = account.scoring, account.stage_state
            stage = stage_state.to_dict() if stage_state is not None else None
            value = {
                "off": account.seen,
                "signals": scoring.signals.to_dict(),
                "policy": account.policy.to_dict(),
                "events": account.events,
                "event_time": account.now,
                "score": round(account.score, 2),
                **self._dump_scoring(scoring),
                **({"stage": stage} if stage is not None else {}),
            }
            put(table, account_id, value, partition=account.partition)
            result.snapshots[account_id] = AccountView(
                account_id=account_id,
                score=account.score,
                features=account.x,
                events=account.events,
                alerts=account.policy.episode,
                event_time=account.now,
                updated_at=self.clock(),
                signals=scoring.signals,
                traits=scoring.traits,
                stage=stage,
                contributions=scoring.contributions,
            )

    def view_of(self, account_id: str, state: Mapping[str, Any]) -> AccountView:
        """The read-model view of an account's stored state, scored by the current model."""
        signals = AccountSignals.from_dict(state["signals"])
        now = float(state["event_time"])
        x = signals.features(now)
        return AccountView(
            account_id=account_id,
            score=self.model.score_one(x),
            features=x,
            events=int(state["events"]),
            alerts=PolicyState.from_dict(state["policy"]).episode,
            event_time=now,
            updated_at=self.clock(),
            signals=signals,
            traits=dict(state.get("traits", {})),
            stage=state.get("stage"),
        )

    def forget(
        self,
        table: MutableMapping[str, Any],
        value: bytes,
        *,
        partition: int,
        result: RecordResult | None = None,
        record: int = 0,
    ) -> RecordResult:
        """Apply a forget control record (:mod:`intent_stream.privacy`): remove its people
        from the accounts ``partition`` owns, so each change lands in that partition's
        changelog. Idempotent; no alert is decided (forgetting is not activity). What it
        changed goes into ``result`` (a new one if None); ``record`` is its index in a batch.
        """
        result = RecordResult() if result is None else result
        request = ForgetRequest.from_bytes(value)
        if request is None:
            result.dead_letters.append(
                DeadLetter("bad_control", "unreadable forget request", value, record)
            )
            return result
        forgotten = 0
        for account_id, state in list(table.items()):
            if state is None or partition_for(account_id, request.partitions) != partition:
                continue
            signals = AccountSignals.from_dict(state["signals"])
            if not [p for p in request.people if signals.forget_person(p)]:
                continue
            now = float(state["event_time"])
            x = signals.features(now)
            score = self.model.score_one(x)
            value_now = {**state, "signals": signals.to_dict(), "score": round(score, 2)}
            put(table, account_id, value_now, partition=partition)
            forgotten += 1
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
            forgotten,
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
            self.explain(view.features, signals, now, contributions=view.contributions)
            if signals is not None
            else self.model.explain(
                view.features, top=self.top_reasons, contributions=view.contributions
            )
        )
        fit_score, fit_reasons = self.fit_explained(view.traits)
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
            "fit_reasons": fit_reasons,
            "traits": view.traits,
            "signals": recent,
            "topics": topics,
            "features": {k: round(v, 3) for k, v in view.features.items() if v},
            "events": view.events,
            "alerts": view.alerts,
            "last_event_at": iso(view.event_time),
            # Wall time differs at every update: formatted without the cache it would flush.
            "updated_at": iso_ms(view.updated_at),
            **self.render_stage(view),
        }

    def fit_score(self, traits: Mapping[str, Any]) -> float:
        """The fit model's score of ``traits`` (``self.fit.score_one``, cached)."""
        return float(self._fit_of(traits, reasons=False)[0])

    def fit_explained(self, traits: Mapping[str, Any]) -> tuple[float, list[str]]:
        """The fit score of ``traits`` and the texts of its reasons
        (``self.fit.explain(traits, top=self.top_reasons)``), cached."""
        score, reasons = self._fit_of(traits, reasons=True)
        return float(score), list(reasons)

    def _fit_of(self, traits: Mapping[str, Any], *, reasons: bool) -> list[Any]:
        """``[score, reason texts or None]`` of ``traits`` (the texts when ``reasons``).

        Both depend only on the traits and the fit model, which changes only when it learns
        (a won or lost deal: ``n_labels`` grows) or is replaced (a checkpoint restored): the
        cache is emptied then, so it always returns what the model would. An account is
        scored for fit by its alerts and rendered at every read-model flush it changed in,
        mostly with the same traits and the same fit model.
        """
        fit = self.fit
        current = (fit, fit.n_labels, self.top_reasons)
        cached_for = self._fit_cached_for
        cache = self._fit_cache
        if cached_for is None or cached_for[0] is not fit or cached_for[1:] != current[1:]:
            cache.clear()
            self._fit_cached_for = current
        try:
            key: bytes | None = orjson.dumps(traits)
        except TypeError:  # not JSON (never so for stored traits): not cached
            key = None
        entry = cache.get(key) if key is not None else None
        if entry is None or (reasons and entry[1] is None):
            if reasons:
                score, why = fit.score_explain(traits, top=self.top_reasons)
                entry = [score, [r.text for r in why]]
            else:
                entry = [fit.score_one(traits), None]
            if key is not None:
                if len(cache) >= _FIT_CACHE:
                    cache.clear()
                cache[key] = entry
        return entry

    def stage_step(
        self,
        account_id: str,
        state: StageState | None,
        events: list[Event],
        signals: AccountSignals,
        score: float,
        now: float,
        result: RecordResult,
        *,
        traits: Mapping[str, Any] | None = None,
    ) -> StageState | None:
        """Run the stage machine on the account after scoring; return its new stage state.

        ``state`` is the account's stage state before this record (None: a new account); the
        transitions made go to ``result.transitions``. ``traits`` (the account's
        firmographics) give the fit score that stage rules on ``fit`` compare with.
        """
        if self.stages is None:
            return None
        step = self.stages.step(
            state,
            account_id=account_id,
            events=[(e.ts, e.body) for e in events],
            signals=signals,
            intent_score=score,
            now=now,
            # A fit prediction per record only when some stage rule reads it.
            fit=self.fit_score(traits or {}) if self._stages_read_fit else None,
        )
        result.transitions.extend(step.transitions)
        return step.state

    def render_stage(self, view: AccountView) -> dict[str, Any]:
        """The stage, since when, and the last transitions, for the read model."""
        if self.stages is None or view.stage is None:
            return {}
        return self.stages.view(view.account_id, view.stage)

    def explain(
        self,
        x: Mapping[str, float],
        signals: AccountSignals,
        now: float,
        *,
        contributions: Mapping[str, float] | None = None,
    ) -> list[Reason]:
        """The intent score's reasons; a topic surge is named after its topic.

        ``contributions``: the prior's points for ``x``, if known (see ``AccountView``).
        """
        phrases: dict[str, str] = {}
        if x.get("topic_surge"):
            best = signals.strongest_topic(now)
            if best is not None:
                phrases["topic_surge"] = f"surging interest in {best[0]} (surge {best[1]:.0f})"
        return self.model.explain(
            x, top=self.top_reasons, phrases=phrases, contributions=contributions
        )

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

    # -- hot-lead alerts (issue 6) ---------------------------------------------------------
    def alert_step(
        self,
        account_id: str,
        surging: Collection[str] | None,
        policy_state: PolicyState,
        scoring: _Scoring,
        x: Mapping[str, float],
        score: float,
        now: float,
        n_events: int,
        stage: StageState | None,
        result: RecordResult,
        *,
        transitions: list[StageTransition],
    ) -> PolicyState:
        """Decide on an alert after scoring and the stage step; return the new policy state.

        ``surging`` are the topics that were surging before this update (None: none): the
        others surging now started a surge; the stages entered are ``transitions``, the
        account's transitions in this update (the stage step's).
        """
        signals = scoring.signals
        surges = _surges_started(surging, signals)
        entered = [t.to_stage for t in transitions if not self._falls_back(t)]
        fit: list[float] = []

        def band() -> str:  # the fit score costs a prediction: only when a rule fires
            fit.append(self.fit_score(scoring.traits))
            return fit_band(fit[0])

        new_state, decision = self.policy.decide_one(
            policy_state, score=score, ts=now, fit_band=band, stages=entered, surges=surges
        )
        for rule, why in decision.suppressed:
            result.alert_triggers[(rule, why)] += 1
        if not decision.fired:
            return new_state
        for rule in decision.rules:
            result.alert_triggers[(rule, "alerted")] += 1
        fit_score = fit[0] if fit else self.fit_score(scoring.traits)
        topics = signals.top_topics(now)
        stage_now = stage.stage if stage is not None else None
        alert = self._alert(
            account_id,
            decision=decision,
            state=new_state,
            before=policy_state,
            scoring=scoring,
            x=x,
            score=score,
            fit_score=fit_score,
            now=now,
            n_events=n_events,
            stage=stage,
            topics=topics,
            transitions=transitions,
        )
        result.alerts.append(alert)
        return new_state.remember(
            score=score, stage=stage_now, topics=[t for t, _ in topics], people=int(x["people"])
        )

    def _falls_back(self, transition: StageTransition) -> bool:
        """Whether a transition goes back from one alerting stage to an earlier one (e.g. a
        dormant opportunity from purchase to evaluation): not a reason to alert."""
        if self.stages is None or transition.from_stage not in self.policy.stages:
            return False
        order = [s.name for s in self.stages.model.stages]
        if transition.from_stage not in order or transition.to_stage not in order:
            return False
        return order.index(transition.to_stage) < order.index(transition.from_stage)

    def _alert(
        self,
        account_id: str,
        *,
        decision: AlertDecision,
        state: PolicyState,
        before: PolicyState,
        scoring: _Scoring,
        x: Mapping[str, float],
        score: float,
        fit_score: float,
        now: float,
        n_events: int,
        stage: StageState | None,
        topics: list[tuple[str, float]],
        transitions: list[StageTransition],
    ) -> OutgoingAlert:
        """The alert payload (``before``: the policy state before this alert)."""
        rule = decision.rule or INTENT_RULE
        aid = alert_id(account_id, rule, state.episode)
        signals, traits = scoring.signals, scoring.traits
        reasons = self.explain(x, signals, now, contributions=scoring.contributions)
        band = fit_band(fit_score)
        show = self.policy.show_emails
        stage_now = stage.stage if stage is not None else None
        people = _engaged_people(signals, now, show_emails=show)
        payload = {
            "alert_id": aid,
            "account_id": account_id,
            "rule": rule,
            "rules": list(decision.rules),
            "triggers": _triggers(decision, score, transitions),
            "intent_score": round(score, 1),
            "threshold": decision.threshold,
            "episode": state.episode,
            "reasons": [r.text for r in reasons if r.contribution > 0],
            "events": n_events,
            "event_time": iso(now),
            "since_last_alert": _since_last_alert(
                account_id,
                before,
                now,
                score=score,
                stage=stage_now,
                topics=[t for t, _ in topics],
                people=int(x["people"]),
                signals=signals,
                show_emails=show,
            ),
            "fit_score": round(fit_score, 1),
            "fit_band": band,
            "stage": stage_now,
            "previous_stage": _previous_stage(stage),
            "topics": [{"topic": t, "surge": s, "new": t in decision.surges} for t, s in topics],
            "people_count": int(x["people"]),
            "people": people,
            "activities": _activities(signals, show_emails=show),
            "route": self.policy.router.route(traits, fit_band=band).to_payload(),
        }
        interval = None if before.last_alert_ts is None else now - before.last_alert_ts
        return OutgoingAlert(aid, account_id, orjson.dumps(payload), rule, interval)


def _parsed(raw: Any, record: int, result: RecordResult) -> Event | None:
    """``raw`` checked as an account event, or None after dead-lettering it (with the index
    of its ``record`` in the batch)."""
    try:
        return parse_event(raw)
    except Rejected as exc:
        result.dead_letters.append(DeadLetter(exc.reason, exc.detail, dump_event(raw), record))
        return None


def _surges_started(surging: Collection[str] | None, signals: AccountSignals) -> list[str]:
    """Topics surging now that were not ``surging`` before this record (see ``TopicSurge``).

    >>> s = AccountSignals(); s.topics = {"ai": [9, 9, 0, 1], "iot": [9, 9, 0, 1]}
    >>> _surges_started({"ai"}, s), _surges_started(None, s)
    (['iot'], ['ai', 'iot'])
    """
    if not signals.topics:
        return []
    before = surging or ()
    return sorted(t for t, cell in signals.topics.items() if cell[3] and t not in before)


def _previous_stage(stage: StageState | None) -> str | None:
    """The stage the account was in before its current one (from the stage history)."""
    if stage is None:
        return None
    history = stage.history
    if history and history[-1][1] == stage.stage:
        return history[-1][0]  # type: ignore[no-any-return]
    return None


def _settled(policy: PolicyState) -> PolicyState:
    """``PolicyState.from_dict(policy.to_dict())`` without the round trip: the same state,
    but for a ``last_rule`` of ``intent_threshold`` before any alert, which is not stored.

    >>> p = PolicyState(episode=2, last_rule=RULE_INTENT, last_topics=("ai",))
    >>> _settled(p) is p, _settled(PolicyState(last_rule=RULE_INTENT)).last_rule
    (True, None)
    """
    if policy.last_rule == RULE_INTENT and policy.episode <= 0:
        return PolicyState.from_dict(policy.to_dict())
    return policy


def _triggers(
    decision: AlertDecision, score: float, transitions: list[StageTransition]
) -> list[str]:
    """What fired, in plain words, one line per rule of the alert."""
    out: list[str] = []
    for rule in decision.rules:
        if rule == INTENT_RULE:
            out.append(f"intent score {score:.0f} reached {decision.threshold:g}")
        elif rule == "stage_entry":
            for t in transitions:
                if t.to_stage in decision.stages:
                    out.append(f"entered {t.to_stage}" + (f" ({t.reason})" if t.reason else ""))
        else:
            out += [f"surge of interest in {topic} started" for topic in decision.surges]
    return out


def shown_person(person_id: str, *, show_emails: bool) -> str:
    """A person id as alerts show it: ids that are email addresses become a pseudonym unless
    ``show_emails`` (the engine keeps person ids only, pseudonymised with
    ``pseudonymise_key``; an email is shown only where a tracker used it as the id).

    >>> shown_person("u-1842", show_emails=False), shown_person("ann@acme.com", show_emails=True)
    ('u-1842', 'ann@acme.com')
    >>> shown_person("ann@acme.com", show_emails=False)
    'person-f9669db96e65'
    """
    if show_emails or "@" not in person_id:
        return person_id
    return "person-" + hashlib.sha256(person_id.encode()).hexdigest()[:12]


def _engaged_people(
    signals: AccountSignals, now: float, *, show_emails: bool
) -> list[dict[str, Any]]:
    """The account's people active in the last 30 days: senior first, then most recent."""
    active = [(p, c) for p, c in signals.people.items() if now - c[0] <= 30 * 86400]
    active.sort(key=lambda pc: (-pc[1][1], -pc[1][0], pc[0]))
    return [
        {
            "id": shown_person(person, show_emails=show_emails),
            "role": cell[2] if len(cell) > 2 else None,
            "senior": bool(cell[1]),
            "last_seen": iso(cell[0]),
        }
        for person, cell in active[:_ALERT_PEOPLE]
    ]


def _activities(signals: AccountSignals, *, show_emails: bool) -> list[dict[str, Any]]:
    """The account's key activities, newest first: the last time each key signal happened.

    Derived from the state the signals keep anyway (each signal's latest event time), so
    alerts cost no state; the person is the one whose latest activity is that event, if any.
    """
    last = sorted(
        ((cell[1], name) for name, cell in signals.counts.items() if name in KEY_ACTIVITIES),
        reverse=True,
    )[:_ALERT_ACTIVITIES]
    by_time = {cell[0]: person for person, cell in signals.people.items()}
    out = []
    for ts, signal in last:
        person = by_time.get(ts)
        out.append(
            {
                "at": iso(ts),
                "type": signal,
                "text": signals.signals[signal].phrase,
                "person": shown_person(person, show_emails=show_emails) if person else None,
            }
        )
    return out


def _since_last_alert(
    account_id: str,
    before: PolicyState,
    now: float,
    *,
    score: float,
    stage: str | None,
    topics: list[str],
    people: int,
    signals: AccountSignals,
    show_emails: bool,
) -> dict[str, Any] | None:
    """What is new since the account's previous alert (None for its first alert).

    ``before`` is the policy state before this alert: the previous alert's number, rule and
    event time (its id is recomputed, being deterministic) and what the account looked like
    then. Fields an older stored state lacks are ``null``.
    """
    last_ts = before.last_alert_ts
    if before.episode < 1 or last_ts is None:
        return None
    rule = before.last_rule or INTENT_RULE
    then = before.last_score
    seen = [
        (not signals.signals[name].high_intent, name)
        for name, cell in signals.counts.items()
        if cell[1] > last_ts
    ]
    active = [(p, c) for p, c in signals.people.items() if c[0] > last_ts]
    active.sort(key=lambda pc: (-pc[1][1], -pc[1][0], pc[0]))
    return {
        "alert_id": alert_id(account_id, rule, before.episode),
        "rule": rule,
        "at": iso(last_ts),
        "hours": round((now - last_ts) / 3600, 1),
        "intent_score": None
        if then is None
        else {"then": then, "now": round(score, 1), "change": round(score - then, 1)},
        "stage": None
        if stage is None and before.last_stage is None
        else {"then": before.last_stage, "now": stage, "changed": stage != before.last_stage},
        "new_signals": [signals.signals[name].phrase for _, name in sorted(seen)],
        "new_topics": sorted(set(topics) - set(before.last_topics)),
        "people": {
            "then": before.last_people,
            "now": people,
            "active": [shown_person(p, show_emails=show_emails) for p, _ in active[:_ALERT_PEOPLE]],
        },
    }


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def dump_event(raw: Any) -> bytes:
    """An event's bytes for the dead-letter topic (JSON when possible)."""
    try:
        return orjson.dumps(raw)
    except TypeError:
        return repr(raw).encode()
