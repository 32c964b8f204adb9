"""The HTTP collector inside a worker: started with the app when write keys are configured.

The collector itself (:mod:`intent_stream.collector`) knows nothing of Faust; this module
only runs it as a Faust service in the worker's event loop, sending through the app's own
producer, so a worker with ``INTENT_STREAM_WRITE_KEYS`` set needs no second process and no
second Kafka connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from mode import Service

from intent_stream.agents.sinks import produce
from intent_stream.collector import Collector, CollectorSite

if TYPE_CHECKING:
    from intent_stream.app import Engine

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(engine: Engine) -> None:
    settings = engine.settings
    if not settings.write_key_set:
        return
    app = engine.app

    async def send(
        *,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        headers: list[tuple[str, bytes]],
    ) -> Awaitable[Any]:
        # The outer await queues the record, the returned future acks it.
        ack: Awaitable[Any] = await produce(
            engine, topic, key=key, value=value, partition=partition, headers=headers
        )
        return ack

    collector = Collector(settings=settings, send=send, metrics=engine.metrics)

    class CollectorService(Service):
        """Serves the collector while the app runs; Faust starts it after recovery."""

        site: CollectorSite | None = None

        async def on_start(self) -> None:
            self.site = CollectorSite(
                collector, host=settings.collector_host, port=settings.collector_port
            )
            await self.site.start()

        async def on_stop(self) -> None:
            if self.site is not None:
                await self.site.stop()

    app.service(CollectorService)
