"""The HTTP collector: Segment's Tracking API in front of the raw topic.

Any Segment or RudderStack server-side SDK can publish to intent_stream unchanged by pointing
its host at the collector. Endpoints: ``POST /v1/track``, ``/v1/identify``, ``/v1/page``,
``/v1/screen``, ``/v1/group``, ``/v1/alias`` (one message each), ``/v1/batch``
(``{"batch": [...], "context": ..., "sentAt": ...}``) and ``GET /healthz``.

What happens to a request, in order: HTTP Basic auth with a write key as the user name
(401); the body limit, on the wire and after gzip (413); JSON and every message checked with
:func:`intent_stream.events.check_message` (400 naming the message and field, and the
request's body to the dead-letter topic); each message stamped with ``receivedAt`` and, if
missing, a ``messageId``; messages grouped by destination partition (the routing of
:func:`intent_stream.client.route_records`) and written as one record per partition; the
answer, ``200 {"success": true}``, only once the broker acknowledged every record (503 if it
does not in time, so SDKs retry).

The module knows nothing of Faust: a :class:`Collector` takes a *send* coroutine with
aiokafka's shape, so the standalone command (:func:`run_collector`, its own
``AIOKafkaProducer``) and the worker (:mod:`intent_stream.agents.collector`, the app's
producer) serve the same code.

>>> parse_basic_auth("Basic " + base64.b64encode(b"wk_live:").decode())
'wk_live'
>>> parse_basic_auth("Bearer abc") is None
True
>>> merge_batch({"batch": [{"type": "page", "anonymousId": "a"}], "sentAt": "2026-01-01T00:00:00Z",
...              "context": {"library": {"name": "x"}}})[0]["sentAt"]
'2026-01-01T00:00:00Z'
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import signal
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web

from intent_stream.client import RawRecord, route_records, utc_iso
from intent_stream.events import SEGMENT_TYPES, Rejected, check_message
from intent_stream.metrics import CONTENT_TYPE, Metrics
from intent_stream.settings import Settings

__all__ = [
    "BATCH_FIELDS",
    "Collector",
    "CollectorError",
    "CollectorSite",
    "RecordSender",
    "merge_batch",
    "parse_basic_auth",
    "run_collector",
]

logger = logging.getLogger(__name__)

#: Batch-level fields copied into each message that lacks them, as Segment's API does.
BATCH_FIELDS = ("context", "integrations", "sentAt")
_ENDPOINTS = frozenset({*SEGMENT_TYPES, "batch"})
_REALM = 'Basic realm="intent_stream", charset="UTF-8"'


class CollectorError(RuntimeError):
    """The collector cannot start as configured; the message says what to change."""


class RecordSender(Protocol):
    """Schedules one Kafka record and returns an awaitable of its acknowledgement.

    Both ``AIOKafkaProducer.send`` (through :func:`aiokafka_sender`) and Faust's
    ``app.producer.send`` have this shape: the outer await queues, the inner one waits for
    the broker.
    """

    def __call__(
        self,
        *,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        headers: list[tuple[str, bytes]],
    ) -> Awaitable[Awaitable[Any]]: ...


def parse_basic_auth(header: str | None) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header, or None.

    Segment SDKs send ``base64(write_key + ":")``; a password, if any, is ignored.

    >>> parse_basic_auth("basic " + base64.b64encode(b"k1:secret").decode())
    'k1'
    >>> parse_basic_auth("Basic !!!") is None
    True
    """
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = decoded.partition(":")[0]
    return user or None


def merge_batch(body: Any) -> list[Any]:
    """The messages of a ``/v1/batch`` body, with batch-level fields merged into each.

    ``context`` and ``integrations`` are merged key by key (the message's own keys win);
    ``sentAt`` is copied into messages without one. Raises :class:`Rejected` if the body is
    not a batch.

    >>> merge_batch({"batch": [{"context": {"ip": "x"}}], "context": {"ip": "y", "app": "a"}})
    [{'context': {'ip': 'x', 'app': 'a'}}]
    """
    if not isinstance(body, dict):
        raise Rejected("invalid_batch", "the body must be a JSON object", field="batch")
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise Rejected("invalid_batch", "'batch' must be a JSON array of messages", field="batch")
    if not batch:
        raise Rejected("invalid_batch", "'batch' is empty", field="batch")
    shared = {name: body[name] for name in BATCH_FIELDS if body.get(name) is not None}
    if not shared:
        return batch
    out: list[Any] = []
    for message in batch:
        if isinstance(message, dict):
            message = dict(message)
            for name, value in shared.items():
                own = message.get(name)
                if own is None:
                    message[name] = value
                elif isinstance(own, dict) and isinstance(value, dict):
                    message[name] = {**value, **own}
        out.append(message)
    return out


class _Refusal(Exception):
    """An answer other than 200, raised from inside the request pipeline."""

    def __init__(
        self,
        status: int,
        error: str,
        reason: str,
        field: str | None = None,
        index: int | None = None,
        *,
        dead_letter: bytes | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {error}")
        self.status = status
        self.error = error
        self.reason = reason
        self.field = field
        self.index = index
        self.dead_letter = dead_letter


class Collector:
    """The collector's request handling, bound to a sender, settings and metrics."""

    def __init__(
        self,
        *,
        settings: Settings,
        send: RecordSender,
        metrics: Metrics,
        publish_timeout: float = 10.0,
        serve_metrics: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.write_key_set:
            raise CollectorError(
                "the collector needs at least one write key: set INTENT_STREAM_WRITE_KEYS "
                "(or --write-keys) to a comma-separated list of secrets your trackers use"
            )
        self.settings = settings
        self.send = send
        self.metrics = metrics
        self.publish_timeout = publish_timeout
        self.serve_metrics = serve_metrics
        self.clock = clock
        self._keys = [k.encode() for k in sorted(settings.write_key_set)]

    def application(self) -> web.Application:
        """A fresh aiohttp application serving the collector's routes."""
        app = web.Application(middlewares=[self._observe])
        for endpoint in sorted(_ENDPOINTS):
            app.router.add_post(f"/v1/{endpoint}", self._handler(endpoint))
        app.router.add_get("/healthz", self._healthz)
        if self.serve_metrics:
            app.router.add_get("/metrics", self._metrics)
        return app

    # -- request pipeline ---------------------------------------------------------------
    def _handler(self, endpoint: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return await self.collect(request, endpoint)

        return handle

    async def collect(self, request: web.Request, endpoint: str) -> web.Response:
        """Authenticate, read, check, stamp and publish one request's messages."""
        if not self._authorised(request.headers.get("Authorization")):
            return _json(
                401,
                {"success": False, "error": "a valid write key is required (HTTP Basic user)"},
                headers={"WWW-Authenticate": _REALM},
            )
        try:
            body = await self._read_body(request)
            messages = self._messages(body, endpoint)
            received = utc_iso(self.clock())
            for message in messages:
                # A write key sent in the body (Segment allows it) must never reach Kafka.
                message.pop("writeKey", None)
                message["receivedAt"] = received
                if message.get("messageId") is None:
                    message["messageId"] = str(uuid.uuid4())
            records = route_records(messages, partitions=self.settings.partitions)
            await self._publish(records)
        except _Refusal as refusal:
            if refusal.dead_letter is not None:
                await self._dead_letter(refusal, endpoint)
            return _json(
                refusal.status,
                {
                    "success": False,
                    "error": refusal.error,
                    "reason": refusal.reason,
                    "field": refusal.field,
                    "index": refusal.index,
                    # Segment SDKs log these two from an error answer.
                    "code": refusal.reason,
                    "message": refusal.error,
                },
                headers={"Retry-After": "1"} if refusal.status == 503 else None,
            )
        kinds: dict[str, int] = {}
        for message in messages:
            kinds[message["type"]] = kinds.get(message["type"], 0) + 1
        for kind, n in kinds.items():
            self.metrics.collector_events.labels(type=kind).inc(n)
        self.metrics.collector_records.inc(len(records))
        return _json(200, {"success": True})

    def _authorised(self, header: str | None) -> bool:
        user = parse_basic_auth(header)
        if user is None:
            return False
        given = user.encode()
        # Compare against every key so the time taken says nothing about which one matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        return matched

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(limit)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in {"identity", "gzip", "deflate", ""}:
            raise _Refusal(415, f"Content-Encoding {encoding!r} is not supported", "encoding")
        size = 0
        chunks: list[bytes] = []
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        raw = b"".join(chunks)
        if encoding in {"gzip", "deflate"}:
            return _decompress(raw, encoding, limit)
        return raw

    def _messages(self, body: bytes, endpoint: str) -> list[dict[str, Any]]:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _bad(body, Rejected("invalid_json", "the body is not valid UTF-8 JSON")) from None
        if endpoint == "batch":
            try:
                messages = merge_batch(doc)
            except Rejected as exc:
                raise _bad(body, exc) from None
        else:
            if not isinstance(doc, dict):
                raise _bad(body, Rejected("not_an_event", "the body must be a JSON object"), 0)
            doc.setdefault("type", endpoint)
            if doc["type"] != endpoint:
                raise _bad(
                    body,
                    Rejected(
                        "bad_type", f"POST /v1/{endpoint} takes {endpoint} calls", field="type"
                    ),
                    0,
                )
            messages = [doc]
        for index, message in enumerate(messages):
            try:
                check_message(message, check_size=True)
            except Rejected as exc:
                raise _bad(body, exc, index) from None
        return messages

    async def _publish(self, records: list[RawRecord]) -> None:
        topic = self.settings.raw_topic

        async def send_all() -> None:
            acks = [
                await self.send(
                    topic=topic,
                    key=r.key,
                    value=r.value,
                    partition=r.partition,
                    headers=[],
                )
                for r in records
            ]
            await asyncio.gather(*acks)

        try:
            await asyncio.wait_for(send_all(), timeout=self.publish_timeout)
        except Exception as exc:
            logger.warning("publishing to %s failed: %s", topic, type(exc).__name__)
            raise _Refusal(
                503, "the event broker did not acknowledge the events; retry later", "unavailable"
            ) from exc

    async def _dead_letter(self, refusal: _Refusal, endpoint: str) -> None:
        assert refusal.dead_letter is not None
        headers = [
            ("dlq.reason", refusal.reason.encode()),
            ("dlq.detail", refusal.error.encode()),
            ("dlq.topic", f"http:/v1/{endpoint}".encode()),
            ("dlq.partition", b"-1"),
            ("dlq.offset", b"-1"),
        ]
        try:
            ack = await asyncio.wait_for(
                self.send(
                    topic=self.settings.dlq_topic,
                    key=None,
                    value=refusal.dead_letter,
                    partition=None,
                    headers=headers,
                ),
                timeout=self.publish_timeout,
            )
            await asyncio.wait_for(ack, timeout=self.publish_timeout)
        except Exception as exc:
            # The client still gets its 400: the request was bad whatever the broker does.
            logger.warning("dead-lettering a rejected request failed: %s", type(exc).__name__)
            return
        self.metrics.dead_letters.labels(reason=refusal.reason).inc()
        logger.info("rejected a /v1/%s request: %s (%s)", endpoint, refusal.reason, refusal.field)

    # -- other routes and the observing middleware ----------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), content_type=CONTENT_TYPE.split(";")[0])

    @web.middleware
    async def _observe(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            endpoint = _endpoint_label(request)
            self.metrics.collector_requests.labels(endpoint=endpoint, status=str(status)).inc()
            if endpoint in _ENDPOINTS:  # health checks and scrapes would skew the figures
                self.metrics.collector_request_latency.observe(time.perf_counter() - start)


def _endpoint_label(request: web.Request) -> str:
    path = request.path
    if path.startswith("/v1/") and path[4:] in _ENDPOINTS:
        return path[4:]
    if path in {"/healthz", "/metrics"}:
        return path[1:]
    return "other"


def _json(
    status: int, doc: dict[str, Any], *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(doc), content_type="application/json", headers=headers
    )


def _too_large(limit: int) -> _Refusal:
    return _Refusal(413, f"the request body is larger than {limit} bytes", "too_large")


def _bad(body: bytes, exc: Rejected, index: int | None = None) -> _Refusal:
    return _Refusal(400, exc.detail, exc.reason, exc.field, index, dead_letter=body)


def _decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """Inflate ``raw`` without ever holding more than ``limit`` + 1 bytes of output.

    A gzip body may hold several members one after another (RFC 1952; what concatenating
    gzip files gives): their data is joined, as ``gunzip`` does. Anything else after the
    compressed data is refused rather than ignored.

    >>> import gzip
    >>> _decompress(gzip.compress(b'{"a": ') + gzip.compress(b"1}"), "gzip", 100)
    b'{"a": 1}'
    """
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    out, rest = b"", raw
    while True:
        inflater = zlib.decompressobj(wbits=wbits)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error:
            raise _Refusal(
                400, f"the body is not valid {encoding} data", "invalid_encoding", dead_letter=raw
            ) from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise _too_large(limit)
        if not inflater.eof:
            raise _Refusal(
                400, f"the {encoding} body is truncated", "invalid_encoding", dead_letter=raw
            )
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # the end, or the zero padding some writers add
            return out
        if encoding != "gzip":
            raise _Refusal(
                400,
                f"the body has data after its {encoding} stream",
                "invalid_encoding",
                dead_letter=raw,
            )


class CollectorSite:
    """Serves a :class:`Collector` on ``host:port`` in the running event loop."""

    def __init__(self, collector: Collector, *, host: str, port: int) -> None:
        self.collector = collector
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        # Decompression is ours (bounded, see _decompress), not aiohttp's.
        runner = web.AppRunner(self.collector.application(), auto_decompress=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, shutdown_timeout=5.0)
        await site.start()
        self._runner = runner
        logger.info("collector listening on %s/v1/", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            logger.info("collector on %s stopped", self.url)


def aiokafka_sender(producer: Any) -> RecordSender:
    """Adapt an ``AIOKafkaProducer`` to :class:`RecordSender`."""

    async def send(
        *,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        headers: list[tuple[str, bytes]],
    ) -> Awaitable[Any]:
        ack: Awaitable[Any] = await producer.send(
            topic, value, key=key, partition=partition, headers=headers or None
        )
        return ack

    return send


def kafka_producer(settings: Settings) -> Any:
    """The standalone collector's producer: small linger, acks from all replicas."""
    from aiokafka import AIOKafkaProducer

    from intent_stream.topics import aiokafka_client_options

    return AIOKafkaProducer(
        **aiokafka_client_options(settings, client_id=f"{settings.app_id}-collector"),
        acks="all",
        linger_ms=5,
        request_timeout_ms=10_000,
        max_request_size=4 << 20,
    )


async def serve(settings: Settings, *, stop: asyncio.Event, metrics: Metrics) -> None:
    """Run the standalone collector until ``stop`` is set."""
    producer = kafka_producer(settings)
    await producer.start()
    try:
        collector = Collector(
            settings=settings,
            send=aiokafka_sender(producer),
            metrics=metrics,
            serve_metrics=True,
        )
        site = CollectorSite(collector, host=settings.collector_host, port=settings.collector_port)
        await site.start()
        try:
            await stop.wait()
        finally:
            await site.stop()
    finally:
        await producer.stop()


def run_collector(settings: Settings) -> int:
    """``intent-stream collector``: serve until SIGINT/SIGTERM; returns the exit code."""
    from prometheus_client import CollectorRegistry

    from intent_stream.runner import check_listen, wait_for_broker
    from intent_stream.topics import ensure_topics

    if not settings.write_key_set:
        raise CollectorError(
            "set INTENT_STREAM_WRITE_KEYS (or --write-keys) to the comma-separated write keys "
            "your trackers send as HTTP Basic user"
        )
    if settings.kafka_embedded:
        raise CollectorError(
            "the collector publishes to the broker your workers read: give it with --kafka "
            "HOST:PORT (INTENT_STREAM_KAFKA), or set INTENT_STREAM_WRITE_KEYS and run "
            "'intent-stream worker', which serves the collector itself (embedded broker included)"
        )
    check_listen(
        settings.collector_host,
        settings.collector_port,
        flag="--collector-port (or --collector-host)",
    )
    wait_for_broker(settings)
    ensure_topics(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop=stop, metrics=Metrics(CollectorRegistry()))

    logger.info(
        "collector: kafka=%s topic=%s url=http://%s:%d/v1/batch",
        settings.kafka,
        settings.raw_topic,
        settings.collector_host,
        settings.collector_port,
    )
    asyncio.run(main())
    return 0
