"""`intent-stream demo --duration`: alerts appear, it exits 0 and leaves nothing running."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from .test_embedded import _alive

pytestmark = pytest.mark.integration


def test_demo_shows_alerts_read_back_and_cleans_up(tmp_path):
    env_file = tmp_path / "out.txt"
    with env_file.open("w") as out:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "intent_stream",
                "demo",
                "--duration",
                "30",
                "--accounts",
                "200",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=150,
            check=False,
        )
    text = env_file.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "HOT LEAD" in text
    summary = re.search(r"(\d+) alerts read back from intent\.sales-alerts\.v1", text)
    assert summary, text[-2000:]
    assert int(summary.group(1)) > 0
    worker_pid = int(re.search(r"worker pid (\d+)", text).group(1))
    broker = re.search(r"broker 127\.0\.0\.1:(\d+)", text).group(1)
    redis_port = re.search(r"redis redis://127\.0\.0\.1:(\d+)", text).group(1)
    assert not _alive(worker_pid)
    for port in (broker, redis_port):
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", int(port)), 0.5),
        ):
            pass
