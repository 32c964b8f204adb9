from __future__ import annotations

import tracemalloc

import faust
import orjson
from faust.serializers.codecs import get_codec

from intent_stream.tables import ExactJson, JsonTable, json_bytes, json_table, stage_of

DOC = {"signals": {"c": {"pricing_view": [1.0, 1_790_000_000.125]}}, "pad": "x" * 700}


def _traced_bytes_per_value(make: object, n: int = 200) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make() for _ in range(n)]  # type: ignore[operator]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return (after - before) / n


def test_stored_values_hold_an_allocation_of_their_own_size():
    size = len(orjson.dumps(DOC))
    table = JsonTable({})

    def store() -> bytes:
        table[f"k{len(table)}"] = DOC
        return table.raw[f"k{len(table) - 1}"]

    # The list and the table's own growth are included: allow 25% over the bytes object.
    assert _traced_bytes_per_value(store) <= 1.25 * (size + 64)


def test_json_bytes_is_the_same_json_as_orjson():
    assert json_bytes(DOC) == orjson.dumps(DOC)
    assert orjson.loads(json_bytes(DOC)) == DOC


def test_a_table_recovers_documents_written_as_plain_json():
    # Values written by Faust's json serializer (an earlier version) read back the same.
    table = JsonTable({"acme.com": b'{"events": 3, "score": 41.5}'})
    assert table["acme.com"] == {"events": 3, "score": 41.5}
    table["acme.com"] = {**table["acme.com"], "stage": {"s": "evaluation"}}
    assert stage_of(table.raw["acme.com"]) == "evaluation"
    assert "acme.com" in table
    assert list(table) == ["acme.com"]
    del table["acme.com"]
    assert len(table) == 0


def test_changelog_keys_are_faust_json_in_an_allocation_of_their_own_size():
    keys = ["acme.com", "Zürich AG", "u-1\x1fx", "a" * 300]
    for key in keys:
        assert ExactJson().dumps(key) == get_codec("json").dumps(key)
        assert ExactJson().loads(get_codec("json").dumps(key)) == key
    # Faust's codec keeps orjson's whole buffer for each key; ours only the key's bytes.
    faust_json, exact = get_codec("json"), ExactJson()
    assert _traced_bytes_per_value(lambda: exact.dumps("acme-industries.example")) < 128
    assert _traced_bytes_per_value(lambda: faust_json.dumps("acme-industries.example")) > 512


def test_json_table_encodes_its_changelog_keys_with_the_exact_codec():
    app = faust.App("test-json-table", autodiscover=False)
    table = json_table(app, "accounts-test", partitions=3)
    assert isinstance(table.raw.key_serializer, ExactJson)
    topic = table.raw.changelog_topic
    assert isinstance(topic.key_serializer, ExactJson)
    assert topic.value_serializer == "raw"
    assert topic.partitions == 3
