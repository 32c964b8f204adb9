"""Running a worker: resolve the embedded stack, wait for the broker, create topics, go."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import faust

from intent_stream.settings import Settings, hide_password
from intent_stream.topics import ensure_topics, kafka_client_options

__all__ = [
    "BrokerUnavailable",
    "PortUnavailable",
    "check_listen",
    "memory_trimmer",
    "ping_redis",
    "resolve_embedded",
    "run_worker",
    "tune_gc",
    "use_event_loop",
    "wait_for_broker",
]

logger = logging.getLogger(__name__)

#: Allocations (net of frees) between two young-generation collections; CPython's is 700.
GC_YOUNG_THRESHOLD = 50_000


class BrokerUnavailable(RuntimeError):
    """The Kafka brokers did not answer within the allowed time."""


class PortUnavailable(RuntimeError):
    """An address this process must listen on cannot be bound."""


def check_listen(host: str, port: int, *, flag: str) -> None:
    """Raise :class:`PortUnavailable`, naming ``flag``, if nothing can listen on
    ``host:port`` (taken, or an address this machine does not have): said in one line
    before start-up rather than as a server's traceback after it.

    >>> with socket.create_server(("127.0.0.1", 0)) as taken:
    ...     port = taken.getsockname()[1]
    ...     try:
    ...         check_listen("127.0.0.1", port, flag="--web-port")
    ...     except PortUnavailable as exc:
    ...         print(str(exc).replace(str(port), "PORT"))
    cannot listen on 127.0.0.1:PORT (Address already in use): choose another with --web-port
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen()
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise PortUnavailable(
            f"cannot listen on {host}:{port} ({why}): choose another with {flag}"
        ) from None


def ping_redis(settings: Settings, *, timeout: float = 5.0) -> None:
    """Ask ``settings.redis`` for a PING; a :class:`redis.exceptions.RedisError` says why
    it cannot answer (the command line prints it as one line, credentials left out)."""
    import redis

    from intent_stream.app import redis_options

    client = redis.Redis.from_url(
        settings.redis,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        **redis_options(settings),
    )
    try:
        client.ping()
    finally:
        client.close()


def resolve_embedded(settings: Settings, stack: ExitStack) -> Settings:
    """Start the embedded broker and/or Redis if asked for; return settings pointing at them."""
    if not (settings.kafka_embedded or settings.redis_embedded):
        return settings
    from intent_stream.embedded import EmbeddedStack

    embedded = EmbeddedStack(kafka=settings.kafka_embedded, redis=settings.redis_embedded)
    endpoints = stack.enter_context(embedded)
    return settings.replace(
        kafka=endpoints.kafka_bootstrap if settings.kafka_embedded else None,
        redis=endpoints.redis_url if settings.redis_embedded else None,
        data_dir=settings.data_dir or str(embedded.workdir / "worker-data"),
    )


def wait_for_broker(
    settings: Settings,
    *,
    timeout: float | None = None,
    attempt_timeout: float = 3.0,
    max_delay: float = 5.0,
) -> None:
    """Block until the brokers answer a metadata request, retrying with back-off.

    Each attempt is bounded by ``attempt_timeout`` (kafka-python's own bootstrap wait is 30 s
    per client, which would turn the retry loop into one long hang). The first failure is
    logged as a warning that says what is wrong; each retry is logged with its delay; after
    ``timeout`` (``settings.kafka_wait``) :class:`BrokerUnavailable` says what to check.
    kafka-python's own per-connection errors are silenced meanwhile: we say it once, clearly.
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout = settings.kafka_wait if timeout is None else timeout
    attempt_ms = int(attempt_timeout * 1000)
    # bootstrap_timeout_ms exists from kafka-python 2.1 on; older ones know the second name.
    wanted = {"bootstrap_timeout_ms": attempt_ms, "api_version_auto_timeout_ms": attempt_ms}
    limits = {k: v for k, v in wanted.items() if k in KafkaAdminClient.DEFAULT_CONFIG}
    deadline = time.monotonic() + timeout
    delay = 0.5
    attempts = 0
    kafka_logger = logging.getLogger("kafka")
    level = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL)
    try:
        while True:
            attempts += 1
            try:
                admin = KafkaAdminClient(
                    **kafka_client_options(settings, client_id=f"{settings.app_id}-probe"),
                    request_timeout_ms=max(attempt_ms, 1000),
                    **limits,
                )
                try:
                    admin.list_topics()
                finally:
                    admin.close()
            except (KafkaError, OSError, ValueError) as exc:
                reason = str(exc) or type(exc).__name__
                if time.monotonic() + delay > deadline:
                    raise BrokerUnavailable(
                        f"Kafka at {settings.kafka} did not answer within {timeout:.0f}s "
                        f"({attempts} attempts; {reason}). Check INTENT_STREAM_KAFKA, that the "
                        "broker is running and reachable from here, the security settings "
                        "(INTENT_STREAM_KAFKA_SECURITY_PROTOCOL ...), or use 'embedded' for a "
                        "local one."
                    ) from exc
                if attempts == 1:
                    logger.warning(
                        "Kafka at %s is not reachable (%s); retrying with back-off for up to %.0fs",
                        settings.kafka,
                        reason,
                        timeout,
                    )
                else:
                    logger.info(
                        "Kafka still not reachable after %d attempts; next try in %.1fs",
                        attempts,
                        delay,
                    )
                time.sleep(delay)
                delay = min(delay * 2, max_delay)
            else:
                if attempts > 1:
                    logger.info("Kafka at %s answered after %d attempts", settings.kafka, attempts)
                return
    finally:
        kafka_logger.setLevel(level)


class _Worker(faust.Worker):
    """A Faust worker without the terminal spinner.

    At log level WARNING or above, Faust installs a spinner that sets the root logger to
    DEBUG, so every debug call in aiokafka builds a record; we never want that.
    """

    def on_setup_root_logger(self, logger: Any, level: int) -> None:
        self.spinner = None


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a worker's allocation pattern.

    A batch of records is decoded into many short-lived dicts that all survive the young
    collections CPython's default threshold triggers while the batch is applied; each
    survivor is then scanned again, and the full collections that follow scan every object
    the worker holds (Faust, aiokafka, the models). Measured on the scoring engine with
    batches of 100 records: 51 us per event with the defaults, 39 with these. Objects
    that exist before the first record (modules, the app) are frozen out of collection;
    collections run every ``GC_YOUNG_THRESHOLD`` allocations. Account state is bytes and
    never part of a cycle, so the memory this holds back is the batch's own garbage.
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def memory_trimmer() -> Callable[[], int] | None:
    """A call that hands the heap's free pages back to the system, or None without glibc.

    CPython gives freed objects back to the C allocator, which keeps them for reuse: after
    a backlog (fetched records, decoded batches, changelog messages waiting in the
    producer) a worker's RSS stays at the peak. glibc's ``malloc_trim(0)`` releases every
    whole free page, at the heap's top and inside it (1-3 ms on a 200-300 MB heap, ~30 ms
    the first time after a backlog freed ~300 MB: the event loop waits that long); measured
    on bench_memory.py at 100,000 accounts, at rest, calling it every 5 s took the worker's
    RSS growth from 1,501-1,721 to 1,315-1,482 bytes per account. musl and macOS have no such
    call: None there. The call returns 1 when it released memory, else 0.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def release() -> int:
        return int(trim(0))

    return release


def use_event_loop(choice: str) -> str:
    """Install the event loop policy ``choice`` names (see ``Settings.event_loop``); return
    the loop the worker will run on: ``"uvloop"`` or ``"asyncio"``.

    uvloop runs the loop's own work (Faust's per-record hand-over, aiokafka's and Redis'
    sockets) faster: a scoring worker applied 4-5% more events per second. Every loop made
    afterwards takes the policy, Faust's consumer thread's too.
    ``"uvloop"`` when it is not installed raises a RuntimeError that says how to install it.

    >>> use_event_loop("asyncio")
    'asyncio'
    """
    if choice == "asyncio":
        asyncio.set_event_loop_policy(None)
        return "asyncio"
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise RuntimeError(
                "INTENT_STREAM_EVENT_LOOP=uvloop but uvloop is not installed (it is not "
                "built for this platform?): pip install uvloop, or set it to auto or asyncio"
            ) from exc
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def _warn_if_redis_is_down(settings: Settings) -> None:
    """A worker rides out Redis outages (the read model catches up), so an unreachable
    Redis at start is no reason to stop; but a wrong URL would otherwise only show as
    recurring write failures. Say it once, clearly."""
    from redis.exceptions import RedisError

    try:
        ping_redis(settings)
    except RedisError as exc:
        logger.error(
            "Redis at %s does not answer (%s: %s): the worker runs on and writes the read "
            "model when it can; check INTENT_STREAM_REDIS (--redis) and its credentials",
            hide_password(settings.redis),
            type(exc).__name__,
            exc,
        )


def run_worker(settings: Settings) -> int:
    """Run a worker until it is stopped (SIGINT/SIGTERM); returns the exit code."""
    from intent_stream.app import create_app

    # Before the app exists: Faust and its consumer thread make their loops from the policy.
    loop = use_event_loop(settings.event_loop)
    check_listen(settings.web_host, settings.web_port, flag="--web-port (or --web-host)")
    with ExitStack() as stack:
        settings = resolve_embedded(settings, stack)
        _warn_if_redis_is_down(settings)
        wait_for_broker(settings)
        ensure_topics(settings)
        engine = create_app(settings)
        logger.info(
            "worker %s: kafka=%s web=http://%s:%d/metrics, %s event loop",
            settings.app_id,
            settings.kafka,
            settings.web_host,
            settings.web_port,
            loop,
        )
        worker = _Worker(engine.app, loglevel=settings.log_level, quiet=True)
        tune_gc()
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0
