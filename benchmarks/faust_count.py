"""A plain Faust counting agent: the baseline for one event per record (bench_pipeline.py).

Not part of the package: the smallest Faust app that reads a topic record by record, as a
per-message agent does, and counts. Started by bench_pipeline.py as its own process with
COUNT_BROKER, COUNT_TOPIC, COUNT_TARGET (records to count), COUNT_OUT (where to write the
result as JSON: records counted and seconds from the first to the last) and COUNT_APP_ID.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import faust

BROKER = os.environ["COUNT_BROKER"]
TOPIC = os.environ["COUNT_TOPIC"]
TARGET = int(os.environ["COUNT_TARGET"])
OUT = Path(os.environ["COUNT_OUT"])

app = faust.App(
    os.environ.get("COUNT_APP_ID", "bench-count"),
    broker=f"kafka://{BROKER}",
    store="memory://",
    autodiscover=False,
    topic_allow_declare=False,
    topic_disable_leader=True,
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    key_serializer="raw",
    value_serializer="raw",
)
topic = app.topic(TOPIC, key_serializer="raw", value_serializer="raw")
state = {"n": 0, "first": 0.0}


@app.agent(topic)
async def count(stream: Any) -> None:
    async for _value in stream:
        state["n"] += 1
        if state["n"] == 1:
            state["first"] = time.perf_counter()
        if state["n"] == TARGET:
            seconds = time.perf_counter() - state["first"]
            OUT.write_text(json.dumps({"records": TARGET, "seconds": seconds}))


class _Worker(faust.Worker):  # type: ignore[misc]
    """No terminal spinner: at WARNING it sets the root logger to DEBUG (KAFKA_NOTES.md)."""

    def on_setup_root_logger(self, logger: Any, level: int) -> None:
        self.spinner = None


if __name__ == "__main__":
    _Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
