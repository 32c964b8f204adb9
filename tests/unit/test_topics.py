from __future__ import annotations

import pytest

from intent_stream.topics import partition_for

#: murmur2 of these keys as Apache Kafka's own tests pin it (UtilsTest.testMurmur2, Java ints).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key", list(JAVA_MURMUR2))
@pytest.mark.parametrize("partitions", [1, 4, 8, 12])
def test_partition_for_is_the_java_default_partitioner(key, partitions):
    # Java: Utils.toPositive(Utils.murmur2(key)) % numPartitions. Records the collector and
    # the ingest agent route must land where any Kafka client's keyed send would put them.
    expected = (JAVA_MURMUR2[key] & 0x7FFFFFFF) % partitions
    assert partition_for(key, partitions) == expected
    assert partition_for(key.decode(), partitions) == expected
