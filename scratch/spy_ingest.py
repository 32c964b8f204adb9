import subprocess, sys, time
sys.path.insert(0, "benchmarks")
import bench_ingest as b
from harness import bench_settings, counters, metrics_url, preload, spawn_worker
from intent_stream.embedded import EmbeddedStack, stop_child
from intent_stream.topics import ensure_topics
with EmbeddedStack() as ep:
    s = bench_settings(ep, "spy", partitions=4, agents="ingest")
    ensure_topics(s)
    recs, total = b.raw_records()
    recs = recs * 3  # longer run; duplicates by messageId are dropped (dedup path) -- keep first copy only
    recs = recs[: len(recs) // 3]
    preload(ep.kafka_bootstrap, s.raw_topic, recs)
    proc = spawn_worker(s)
    url = metrics_url(s)
    m = "intent_stream_ingest_messages_total"
    while counters(url).get(m, 0) <= 0: time.sleep(0.02)
    spy = subprocess.Popen([".venv/bin/py-spy", "record", "-p", str(proc.pid), "-d", "3", "-r", "500", "-f", "raw", "-o", "/tmp/spy-ingest.txt"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spy.wait()
    stop_child(proc)
