"""Sending rejected records and events to the dead-letter topic, with their reason and origin."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from intent_stream.app import Engine
    from intent_stream.pipeline import DeadLetter

__all__ = ["send_dead_letters"]

logger = logging.getLogger(__name__)


async def send_dead_letters(engine: Engine, dead: Sequence[DeadLetter], message: Any) -> None:
    """Publish ``dead`` (from the record ``message``) with ``dlq.*`` headers; count them."""
    if not dead:
        return
    for letter in dead:
        await engine.topics.dlq.send(
            key=message.key,
            value=letter.value,
            headers=[
                ("dlq.reason", letter.reason.encode()),
                ("dlq.detail", letter.detail.encode()),
                ("dlq.topic", message.topic.encode()),
                ("dlq.partition", str(message.partition).encode()),
                ("dlq.offset", str(message.offset).encode()),
            ],
        )
        engine.metrics.dead_letters.labels(reason=letter.reason).inc()
    logger.warning(
        "dead-lettered %d item(s) from %s[%d]@%d: %s",
        len(dead),
        message.topic,
        message.partition,
        message.offset,
        ", ".join(sorted({d.reason for d in dead})),
    )
