"""What every worker runs whatever its agents: the Redis read-model flush, Prometheus metrics,
a health check and the account read API on the web server."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from intent_stream.metrics import CONTENT_TYPE
from intent_stream.readmodel import account_key, by_score_key, top_rows
from intent_stream.runner import memory_trimmer

if TYPE_CHECKING:
    from intent_stream.app import Engine

__all__ = ["MAX_TOP", "register"]

logger = logging.getLogger(__name__)

#: Most accounts ``GET /accounts?top=N`` returns.
MAX_TOP = 1000


def register(engine: Engine) -> None:
    app = engine.app

    @app.timer(engine.settings.redis_flush_interval)  # type: ignore[untyped-decorator]
    async def flush_read_model() -> None:
        await engine.read_model.flush()

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def final_flush(app: Any, **kwargs: Any) -> None:
        await engine.read_model.flush()

    release = memory_trimmer() if engine.settings.memory_trim_interval > 0 else None
    if release is not None:

        @app.timer(engine.settings.memory_trim_interval)  # type: ignore[untyped-decorator]
        async def trim_memory() -> None:
            release()

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        # CONTENT_TYPE carries a charset parameter, which aiohttp wants separately.
        # ?name[]=...: only those samples, as prometheus_client's own exporter allows.
        names = request.query.getall("name[]", [])
        return web.bytes(engine.metrics.exposition(names), content_type=CONTENT_TYPE.split(";")[0])

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

    @app.page("/accounts/{account_id}")  # type: ignore[untyped-decorator]
    async def account(web: Any, request: Any, account_id: str) -> Any:
        prefix = engine.settings.redis_prefix
        try:
            raw = await engine.read_model.client.get(account_key(prefix, account_id))
        except (RedisError, OSError) as exc:
            logger.warning("account read failed: %s", type(exc).__name__)
            return web.json({"error": "the read model is unavailable"}, status=503)
        if raw is None:
            return web.json({"error": "unknown account", "account_id": account_id}, status=404)
        return web.json(orjson.loads(raw))

    @app.page("/accounts")  # type: ignore[untyped-decorator]
    async def accounts(web: Any, request: Any) -> Any:
        raw_top = request.query.get("top", "10")
        try:
            top = int(raw_top)
        except ValueError:
            top = 0
        if not 1 <= top <= MAX_TOP:
            return web.json({"error": f"top must be an integer from 1 to {MAX_TOP}"}, status=400)
        prefix, client = engine.settings.redis_prefix, engine.read_model.client
        try:
            ranked: list[Any] = list(
                await client.zrevrange(by_score_key(prefix), 0, top - 1, withscores=True)
            )
            keys = [account_key(prefix, bytes(m).decode()) for m, _ in ranked]
            snapshots: list[Any] = list(await client.mget(keys)) if keys else []
        except (RedisError, OSError) as exc:
            logger.warning("accounts read failed: %s", type(exc).__name__)
            return web.json({"error": "the read model is unavailable"}, status=503)
        return web.json({"accounts": top_rows(ranked, snapshots)})
