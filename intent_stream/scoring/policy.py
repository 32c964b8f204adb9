"""When a score becomes a hot-lead alert: hysteresis, cooldown, deterministic ids.

>>> p = HotLeadPolicy(enter=70, exit=50, cooldown_s=100)
>>> s, fired = p.decide(PolicyState(), score=75, ts=0)
>>> fired, s.episode
(True, 1)
>>> p.decide(s, score=80, ts=10)[1]  # disarmed until the score falls below exit
False
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["HotLeadPolicy", "PolicyState", "alert_id"]


@dataclass(frozen=True)
class PolicyState:
    """Per-account alert state: armed, alerts so far, event time of the last alert."""

    armed: bool = True
    episode: int = 0
    last_alert_ts: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.armed, "e": self.episode, "t": self.last_alert_ts}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyState:
        return cls(armed=bool(data["a"]), episode=int(data["e"]), last_alert_ts=data["t"])


class HotLeadPolicy:
    """Fire at ``enter``, re-arm below ``exit``, at most once per ``cooldown_s`` (event time)."""

    def __init__(
        self, *, enter: float = 70.0, exit: float = 50.0, cooldown_s: float = 86400.0
    ) -> None:
        if exit > enter:
            raise ValueError("exit must not exceed enter")
        self.enter = enter
        self.exit = exit
        self.cooldown_s = cooldown_s

    def decide(self, state: PolicyState, *, score: float, ts: float) -> tuple[PolicyState, bool]:
        """The new state, and whether to alert now."""
        if not state.armed:
            if score < self.exit:
                return replace(state, armed=True), False
            return state, False
        if score < self.enter:
            return state, False
        if state.last_alert_ts is not None and ts - state.last_alert_ts < self.cooldown_s:
            return state, False
        return PolicyState(armed=False, episode=state.episode + 1, last_alert_ts=ts), True


def alert_id(account_id: str, rule: str, episode: int) -> str:
    """Deterministic alert id: a replay of the same history yields the same id.

    >>> alert_id("acme.com", "intent_threshold", 1) == alert_id("acme.com", "intent_threshold", 1)
    True
    >>> len(alert_id("acme.com", "intent_threshold", 1))
    32
    """
    return hashlib.sha256(f"{account_id}\x1f{rule}\x1f{episode}".encode()).hexdigest()[:32]
