"""Profile the worker on the batched account-topic layout (py-spy attached to the worker)."""
import asyncio, os, subprocess, sys, time
sys.path.insert(0, "benchmarks")
import bench_pipeline as bp
from harness import bench_settings, preload, spawn_worker, metrics_url
from intent_stream.embedded import EmbeddedStack, stop_child
from intent_stream.topics import ensure_topics

layout_name = sys.argv[1] if len(sys.argv) > 1 else "batched, account topic"
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/spy-worker.txt"
layout = bp.LAYOUTS[layout_name]
with EmbeddedStack() as ep:
    settings = bench_settings(ep, "prof", agents="ingest,score" if layout == "raw" else "score",
                              partitions=bp.PARTITIONS, session_timeout=6.0)
    ensure_topics(settings)
    topic = settings.raw_topic if layout == "raw" else settings.events_topic
    recs, total = bp.records(layout)
    preload(ep.kafka_bootstrap, topic, recs)
    proc = spawn_worker(settings)
    url = metrics_url(settings)
    while bp.processed(url) <= 0:
        time.sleep(0.05)
    t0, n0 = time.perf_counter(), bp.processed(url)
    spy = subprocess.Popen([".venv/bin/py-spy", "record", "-p", str(proc.pid), "-r", "200", "-d", "15", "-f", "raw", "-o", out, "--nonblocking"])
    while (n := bp.processed(url)) < total:
        time.sleep(0.2)
    print("rate", (n - n0) / (time.perf_counter() - t0), "events", total)
    spy.wait()
    stop_child(proc)
