"""``intent-stream simulate --kafka``: a simulation published to the raw topic, read back."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from intent_stream.client import visitor_key
from intent_stream.simulate import SimulationConfig, ground_truth, simulate
from intent_stream.topics import partition_for

from .conftest import read_to_end, settings_env

pytestmark = pytest.mark.integration


def _simulate(settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "intent_stream", "simulate", *args],
        env=settings_env(settings),
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_a_simulation_published_to_the_raw_topic_arrives_whole_and_routed_by_visitor(
    settings, endpoints, tmp_path
):
    config = SimulationConfig(accounts=25, days=20, seed=8, reveal_share=0.5)
    expected = list(simulate(config))
    truth_path = tmp_path / "truth.jsonl"
    args = ["--accounts", "25", "--days", "20", "--seed", "8", "--reveal-share", "0.5"]
    done = _simulate(settings, *args, "--rate", "20000", "--truth", str(truth_path))
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert f"sent {len(expected):,} of {len(expected):,} events" in done.stdout.decode()
    assert "100.0%" in err  # the progress line, final state

    received: list[dict] = []

    # The command exited after the broker acknowledged every event: all of it is there.
    records = read_to_end(endpoints, settings.raw_topic, timeout=30)
    for record in records:
        batch = orjson.loads(record.value)["batch"]
        # Routed as the collector routes: every event in its visitor's partition.
        assert {partition_for(visitor_key(e), settings.partitions) for e in batch} == {
            record.partition
        }
        assert record.key == visitor_key(batch[0]).encode()
        received.extend(batch)
    assert len(records) < len(expected)  # batched: many events per record
    # Every event exactly once, unchanged; order kept within each visitor.
    key = lambda e: e["messageId"]  # noqa: E731
    assert sorted(received, key=key) == sorted(expected, key=key)
    for visitor in {visitor_key(e) for e in expected}:
        mine = [e["messageId"] for e in expected if visitor_key(e) == visitor]
        assert [e["messageId"] for e in received if visitor_key(e) == visitor] == mine
    truth = [orjson.loads(line) for line in truth_path.read_bytes().splitlines()]
    assert truth == [orjson.loads(orjson.dumps(t)) for t in ground_truth(config)]


def test_an_unreachable_broker_is_a_clear_error(settings):
    from intent_stream.embedded import free_port

    done = subprocess.run(
        [sys.executable, "-m", "intent_stream", "simulate", "--accounts", "2", "--wait", "1"],
        env={**settings_env(settings), "INTENT_STREAM_KAFKA": f"127.0.0.1:{free_port()}"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr.decode()
    assert "intent-stream:" in done.stderr.decode()


def test_a_broker_lost_mid_run_ends_the_run_with_the_undelivered_counted(settings, tmp_path):
    import threading

    from intent_stream.embedded import EmbeddedStack
    from intent_stream.simulate_cli import SimulateOptions, publish_simulation
    from intent_stream.topics import ensure_topics

    from .conftest import wait_until

    # A broker of its own, to take away while the simulation is being published.
    (tmp_path / "broker").mkdir()
    broker = EmbeddedStack(redis=False, workdir=tmp_path / "broker")
    own = settings.replace(kafka=broker.start().kafka_bootstrap)
    try:
        ensure_topics(own)
        options = SimulateOptions(accounts=2000, days=90, seed=5, rate=2000)  # ~35 s of it
        results: list = []
        progress = open(tmp_path / "progress.txt", "w")  # noqa: SIM115

        def run() -> None:
            try:
                summary = publish_simulation(
                    options,
                    settings=own,
                    topic=own.raw_topic,
                    partitions=own.partitions,
                    err=progress,
                    # Shorter than the command's 45 s, for the test's sake.
                    producer_options={"delivery_timeout_ms": 6000, "request_timeout_ms": 3000},
                )
            except BaseException as exc:  # reported by the assertions, not leaked
                results.append(exc)
            else:
                results.append(summary)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        wait_until(
            lambda: (tmp_path / "progress.txt").stat().st_size > 0,
            timeout=30,
            what="the first events sent",
        )
    finally:
        broker.stop()
    runner.join(timeout=60)
    assert not runner.is_alive(), "the run must end once the broker is gone"
    progress.close()
    (summary,) = results
    assert not isinstance(summary, BaseException), repr(summary)
    whole = sum(1 for _ in simulate(SimulationConfig(accounts=2000, days=90, seed=5)))
    assert 0 < summary.events < whole, "it stops sending once sends fail"
    assert summary.failed > 0
    assert summary.error
    assert summary.delivered + summary.failed == summary.events
