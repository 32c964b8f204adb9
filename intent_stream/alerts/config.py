"""The worker's alert policy, built from the settings (group ``alerts``).

>>> from intent_stream.settings import Settings
>>> policy = alert_policy(Settings(alert_rules="intent_threshold", alert_enter=80.0))
>>> policy.rules, policy.enter, policy.router.default
(('intent_threshold',), 80.0, 'sales-{region}')
"""

from __future__ import annotations

from intent_stream.scoring.policy import AlertRouter, HotLeadPolicy
from intent_stream.settings import Settings

__all__ = ["alert_policy"]


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def alert_policy(settings: Settings) -> HotLeadPolicy:
    """The :class:`HotLeadPolicy` the settings describe (already validated by ``Settings``)."""
    return HotLeadPolicy(
        enter=settings.alert_enter,
        exit=settings.alert_exit,
        cooldown_s=settings.alert_cooldown,
        rules=_names(settings.alert_rules),
        stages=_names(settings.alert_stages),
        weak_fit_points=settings.alert_weak_fit_points,
        weak_fit_min_score=settings.alert_weak_fit_min_score,
        router=AlertRouter(settings.alert_routes, default=settings.alert_default_route),
        show_emails=settings.alert_emails == "show",
    )
