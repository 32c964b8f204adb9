"""``intent-stream send``: a JSONL file to the raw topic, bad lines reported, exit codes."""

from __future__ import annotations

import subprocess
import sys
import uuid

import orjson
import pytest

from .conftest import read_topic, settings_env

pytestmark = pytest.mark.integration


def _send(settings, *args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "intent_stream", "send", *args],
        env=settings_env(settings),
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def _messages(endpoints, topic, count):
    found: list = []

    def completes(record) -> bool:
        found.extend(orjson.loads(record.value)["batch"])
        return len(found) >= count

    read_topic(endpoints, topic, count=1, timeout=30, predicate=completes)
    return found


@pytest.fixture
def raw_settings(settings):
    tag = uuid.uuid4().hex[:8]
    return settings.replace(raw_topic=f"it.{tag}.raw.v1", identity_topic=f"it.{tag}.identity.v1")


def _event(i: int) -> bytes:
    return orjson.dumps(
        {
            "type": "page",
            "anonymousId": f"visitor-{i % 9}",
            "messageId": f"line-{i}",
            "timestamp": "2026-01-01T00:00:00Z",
            "context": {"groupId": "acme.example"},
            "properties": {"path": "/pricing"},
        }
    )


def test_a_file_with_bad_lines_sends_the_good_ones_and_exits_1(raw_settings, endpoints, tmp_path):
    lines = [_event(i) for i in range(40)]
    lines[9] = b'{"type": "page", "anonymousId": '  # line 10: not JSON
    lines[19] = b'{"type": "track", "anonymousId": "v"}'  # line 20: no event
    lines[29] = b""  # blank lines are skipped, not bad
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    done = _send(raw_settings, str(path), "--batch", "7", "--rate", "5000")
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "line 10: invalid_json" in err
    assert "line 20: bad_field" in err
    assert "'event'" in err
    assert "line 30" not in err
    assert "37 events" in err  # the progress line, final state
    assert "100.0%" in err
    assert "sent 37 of 37 events from 40 lines" in done.stdout.decode()
    assert "2 bad line(s)" in done.stdout.decode()

    found = _messages(endpoints, raw_settings.raw_topic, count=37)
    expected = {f"line-{i}" for i in range(40)} - {"line-9", "line-19", "line-29"}
    assert {m["messageId"] for m in found} == expected


def test_stdin_with_only_good_lines_exits_0(raw_settings, endpoints):
    data = b"\n".join(_event(i) for i in range(10)) + b"\n"
    done = _send(raw_settings, "-", stdin=data)
    assert done.returncode == 0, done.stderr.decode()
    assert "sent 10 of 10 events from 10 lines" in done.stdout.decode()
    found = _messages(endpoints, raw_settings.raw_topic, count=10)
    assert sorted(m["messageId"] for m in found) == sorted(f"line-{i}" for i in range(10))


def test_a_missing_file_is_reported_with_exit_2(raw_settings, tmp_path):
    done = _send(raw_settings, str(tmp_path / "nope.jsonl"))
    assert done.returncode == 2
    assert "cannot read" in done.stderr.decode()


def test_ctrl_c_flushes_what_was_queued_and_says_so(raw_settings, endpoints, tmp_path):
    import re
    import signal

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(_event(i) for i in range(5000)) + b"\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "intent_stream", "send", str(path), "--batch", "5", "--rate", "50"],
        env=settings_env(raw_settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Once the first events are on the topic, the sender is in its paced loop.
        read_topic(endpoints, raw_settings.raw_topic, count=1, timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err.decode()
    assert "interrupted: flushing the events queued so far" in err.decode()
    summary = re.search(rb"sent ([\d,]+) of ([\d,]+) events", out)
    assert summary, out.decode()
    delivered, queued = (int(n.replace(b",", b"")) for n in summary.groups())
    assert 0 < delivered == queued < 5000
    assert b"interrupted: the lines after these were not read" in out
    # The final progress line gives the share of the file read before the interrupt.
    shares = re.findall(r"events/s\s+([\d.]+)%", err.decode())
    assert shares, err.decode()
    assert 0 < float(shares[-1]) < 100
    found = _messages(endpoints, raw_settings.raw_topic, count=queued)
    assert {m["messageId"] for m in found} == {f"line-{i}" for i in range(queued)}
