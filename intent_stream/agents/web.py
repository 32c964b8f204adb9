"""What every worker runs whatever its agents: the Redis read-model flush, Prometheus metrics
and a health check on the web server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from intent_stream.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from intent_stream.app import Engine

__all__ = ["register"]


def register(engine: Engine) -> None:
    app = engine.app

    @app.timer(engine.settings.redis_flush_interval)  # type: ignore[untyped-decorator]
    async def flush_read_model() -> None:
        await engine.read_model.flush()

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def final_flush(app: Any, **kwargs: Any) -> None:
        await engine.read_model.flush()

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        # CONTENT_TYPE carries a charset parameter, which aiohttp wants separately.
        return web.bytes(engine.metrics.exposition(), content_type=CONTENT_TYPE.split(";")[0])

    from faust.web import View

    @app.page("/people/{person_id}")
    class People(View):
        """``DELETE /people/{id}``: forget a person (see :mod:`intent_stream.privacy`)."""

        async def delete(self, request: Any, person_id: str) -> Any:
            from intent_stream.privacy import request_forget

            report = await request_forget(engine, person_id)
            return self.json(report.as_dict(), status=202)

    @app.page("/healthz")  # type: ignore[untyped-decorator]
    async def healthz(web: Any, request: Any) -> Any:
        return web.json(
            {
                "status": "ok",
                "app_id": engine.settings.app_id,
                "agents": sorted(engine.settings.agent_set),
            }
        )
