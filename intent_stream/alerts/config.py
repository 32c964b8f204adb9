"""The worker's alert policy, built from the settings (group ``alerts``).

>>> from intent_stream.settings import Settings
>>> policy = alert_policy(Settings(alert_rules="intent_threshold", alert_enter=80.0))
>>> policy.rules, policy.enter, policy.router.default
(('intent_threshold',), 80.0, 'sales-{region}')
"""

from __future__ import annotations

from intent_stream.scoring.policy import RULE_STAGE, AlertRouter, HotLeadPolicy
from intent_stream.scoring.stages import StageConfigError, StageModel
from intent_stream.settings import Settings, env_name

__all__ = ["alert_policy", "check_alert_stages"]


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
        surge_min_score=settings.alert_surge_min_score,
        router=AlertRouter(settings.alert_routes, default=settings.alert_default_route),
        show_emails=settings.alert_emails == "show",
    )


def check_alert_stages(settings: Settings, model: StageModel) -> str | None:
    """Raise :class:`StageConfigError` if ``alert_stages``, as set, names a stage ``model``
    lacks: a misspelt stage would silently never alert. Left at its default with a model
    of other stages, it is a warning (returned) rather than an error: the stage model is
    the user's, the default list ours.

    >>> from intent_stream.scoring.stages import default_stage_model
    >>> check_alert_stages(Settings(alert_stages="evaluation,purchase"), default_stage_model())
    >>> check_alert_stages(Settings(alert_stages="evaluaton"), default_stage_model())
    Traceback (most recent call last):
    ...
    intent_stream.scoring.stages.StageConfigError: INTENT_STREAM_ALERT_STAGES names evaluaton, ...
    """
    if RULE_STAGE not in _names(settings.alert_rules):
        return None
    known = [spec.name for spec in model.stages]
    unknown = [name for name in _names(settings.alert_stages) if name not in known]
    if not unknown:
        return None
    problem = (
        f"{env_name('alert_stages')} names {', '.join(unknown)}, not a stage of "
        f"{model.source} (its stages: {', '.join(known)})"
    )
    if settings.alert_stages != Settings().alert_stages:
        raise StageConfigError(problem)
    return f"{problem}: entering those stages alerts nobody; set it to this model's stages"
