"""This machine's single-core Python speed, so that figures from different machines compare.

The engine's costs are CPU-bound Python; the same code ran about twice as fast on one host
as on another of the same "2-core" kind. ``make bench`` runs it with the others; their
absolute figures scale with it (their ratios to a raw ceiling measured in the same run
much less). Prints a table and writes benchmarks/results/cpu.json.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import orjson
from harness import write_result

LOOP = 10_000_000
DOCS = 200_000
DOC = {"type": "page", "context": {"groupId": "acme.com"}, "properties": {"path": "/pricing"}}


def best_of(repeat: int, run: Callable[[], None]) -> float:
    """The fastest of ``repeat`` timings of ``run()`` in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def python_loop() -> None:
    total = 0
    for i in range(LOOP):
        total += i


def json_round_trip() -> None:
    dumps, loads = orjson.dumps, orjson.loads
    for _ in range(DOCS):
        loads(dumps(DOC))


def main() -> None:
    loop_s = best_of(3, python_loop)
    json_us = best_of(3, json_round_trip) / DOCS * 1e6
    cores = os.cpu_count() or 0
    print(f"{'measure':<44} {'value':>10}")
    print(f"{'pure-Python loop, 10M additions (s)':<44} {loop_s:10.2f}")
    print(f"{'orjson dumps + loads, 100-byte event (us)':<44} {json_us:10.2f}")
    print(f"{'cores':<44} {cores:10d}")
    write_result("cpu", {"python_loop_10m_s": loop_s, "orjson_round_trip_us": json_us})
    print(f"SUMMARY cpu: 10M-addition Python loop {loop_s:.2f} s, {cores} cores (reference)")


if __name__ == "__main__":
    main()
