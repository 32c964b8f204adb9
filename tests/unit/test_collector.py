from __future__ import annotations

import base64
import gzip
import zlib

import pytest

from intent_stream.cli import main
from intent_stream.collector import (
    Collector,
    CollectorError,
    _decompress,
    _Refusal,
    merge_batch,
    parse_basic_auth,
)
from intent_stream.events import Rejected
from intent_stream.metrics import Metrics
from intent_stream.settings import Settings


def _basic(user_pass: bytes) -> str:
    return "Basic " + base64.b64encode(user_pass).decode()


@pytest.mark.parametrize(
    ("header", "user"),
    [
        (_basic(b"wk_1:"), "wk_1"),  # what Segment SDKs send
        (_basic(b"wk_1:ignored-password"), "wk_1"),
        (_basic(b"wk_1"), "wk_1"),  # no colon at all
        ("basic " + base64.b64encode(b"wk_1:").decode(), "wk_1"),  # scheme is case-insensitive
        ("  Basic   " + base64.b64encode(b"wk:").decode() + "  ", "wk"),
        (_basic(b":password-only"), None),
        (None, None),
        ("", None),
        ("Bearer wk_1", None),
        ("Basic", None),
        ("Basic not*base64", None),
        ("Basic " + base64.b64encode(b"\xff\xfe:").decode(), None),  # not UTF-8
    ],
)
def test_parse_basic_auth(header, user):
    assert parse_basic_auth(header) == user


def test_merge_batch_merges_context_and_integrations_key_by_key_message_wins():
    body = {
        "batch": [
            {"type": "page", "anonymousId": "a", "context": {"ip": "own", "locale": "fr"}},
            {"type": "page", "anonymousId": "b"},
        ],
        "context": {"ip": "shared", "library": {"name": "sdk"}},
        "integrations": {"All": False},
    }
    first, second = merge_batch(body)
    assert first["context"] == {"ip": "own", "locale": "fr", "library": {"name": "sdk"}}
    assert second["context"] == {"ip": "shared", "library": {"name": "sdk"}}
    assert first["integrations"] == second["integrations"] == {"All": False}
    # The caller's messages are not changed in place.
    assert "integrations" not in body["batch"][0]


def test_merge_batch_copies_sent_at_only_where_missing():
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "sentAt": "2026-01-01T00:00:09Z"},
            {"type": "track", "userId": "u", "event": "E"},
        ],
        "sentAt": "2026-01-01T00:00:10Z",
    }
    first, second = merge_batch(body)
    assert first["sentAt"] == "2026-01-01T00:00:09Z"
    assert second["sentAt"] == "2026-01-01T00:00:10Z"


def test_merge_batch_without_shared_fields_returns_messages_as_they_are():
    messages = [{"type": "page", "anonymousId": "a"}, "not even an object"]
    assert merge_batch({"batch": messages}) == messages


def test_merge_batch_leaves_a_non_object_context_for_the_checks_to_reject():
    (message,) = merge_batch({"batch": [{"context": []}], "context": {"ip": "x"}})
    assert message["context"] == []


@pytest.mark.parametrize(
    "body", [[], {"batch": {}}, {"batch": "x"}, {"events": []}, {"batch": []}, "batch"]
)
def test_merge_batch_rejects_what_is_not_a_batch(body):
    with pytest.raises(Rejected) as info:
        merge_batch(body)
    assert info.value.reason == "invalid_batch"
    assert info.value.field == "batch"


def test_decompress_gzip_and_deflate_round_trip():
    data = b'{"batch": []}' * 10
    assert _decompress(gzip.compress(data), "gzip", 1024) == data
    assert _decompress(zlib.compress(data), "deflate", 1024) == data


def test_decompress_stops_at_the_limit_without_inflating_everything():
    bomb = gzip.compress(b"0" * 10_000_000)  # ~10 KB on the wire
    with pytest.raises(_Refusal) as info:
        _decompress(bomb, "gzip", 512_000)
    assert info.value.status == 413


def test_decompress_joins_gzip_members_and_counts_them_all_against_the_limit():
    two = gzip.compress(b'{"batch": [') + gzip.compress(b"]}")
    assert _decompress(two + b"\0\0", "gzip", 1024) == b'{"batch": []}'
    with pytest.raises(_Refusal) as info:
        _decompress(gzip.compress(b"x" * 600) + gzip.compress(b"y" * 600), "gzip", 1000)
    assert info.value.status == 413


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (b"not gzip at all", "gzip"),
        (gzip.compress(b"x" * 100)[:20], "gzip"),
        (gzip.compress(b"{}") + b"trailing", "gzip"),
        (zlib.compress(b"{}") + b"trailing", "deflate"),
    ],
)
def test_decompress_refuses_broken_truncated_or_trailed_data_and_keeps_it_for_the_dlq(
    raw, encoding
):
    with pytest.raises(_Refusal) as info:
        _decompress(raw, encoding, 1024)
    assert (info.value.status, info.value.reason) == (400, "invalid_encoding")
    assert info.value.dead_letter == raw


def test_collector_refuses_to_exist_without_write_keys():
    from prometheus_client import CollectorRegistry

    async def send(**kwargs):
        raise AssertionError("never called")

    with pytest.raises(CollectorError, match="INTENT_STREAM_WRITE_KEYS"):
        Collector(
            settings=Settings(write_keys=" , "), send=send, metrics=Metrics(CollectorRegistry())
        )


def test_collector_command_without_write_keys_says_what_to_set(capsys, monkeypatch):
    monkeypatch.delenv("INTENT_STREAM_WRITE_KEYS", raising=False)
    assert main(["collector", "--kafka", "127.0.0.1:1"]) == 2
    assert "INTENT_STREAM_WRITE_KEYS" in capsys.readouterr().err


def test_collector_command_with_the_embedded_broker_points_to_the_worker(capsys, monkeypatch):
    monkeypatch.setenv("INTENT_STREAM_WRITE_KEYS", "k1")
    assert main(["collector", "--kafka", "embedded"]) == 2
    err = capsys.readouterr().err
    assert "intent-stream worker" in err
    assert "k1" not in err  # the secret is never echoed


def test_send_command_with_the_embedded_broker_asks_for_one(capsys, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("{}\n")
    assert main(["send", str(path), "--kafka", "embedded"]) == 2
    assert "--kafka" in capsys.readouterr().err


def test_help_lists_the_new_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "collector" in out
    assert "send" in out
