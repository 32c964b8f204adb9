"""Journey generator for the docker-compose ``generator`` profile.

Publishes the demo's simulated B2B buyer journeys (``intent_stream.simulate``, the same
producer loop as ``intent-stream demo``) to the raw topic of ``INTENT_STREAM_KAFKA`` as a
tracker would (one Segment batch per visitor partition per tick), until stopped
(SIGTERM/SIGINT) or ``--duration`` elapses.

Event times span the last 90 days (cohort after cohort), so event-time latencies in the
dashboards show days, not seconds, while it runs: it is a load and demo source, not a tracker.
After the first cohort the simulated clock runs ahead of the wall clock: run the workers with
``INTENT_STREAM_MAX_CLOCK_SKEW=0`` or those events are dead-lettered as ``bad_timestamp``.

    python deploy/generate.py --rate 200 [--accounts 400] [--seed 42] [--duration SECONDS]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from intent_stream.demo import DemoOptions, _Counters, _produce
from intent_stream.runner import wait_for_broker
from intent_stream.settings import Settings

logger = logging.getLogger("intent_stream.generate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="generate.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--accounts", type=int, default=400, help="accounts per cohort")
    parser.add_argument("--seed", type=int, default=42, help="simulation seed")
    parser.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    settings = Settings.from_env()
    if settings.kafka_embedded:
        print("generate.py: set INTENT_STREAM_KAFKA to the broker (host:port)", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.duration is not None:
        timer = threading.Timer(args.duration, stop.set)
        timer.daemon = True
        timer.start()
    wait_for_broker(settings)
    options = DemoOptions(rate=args.rate, accounts=args.accounts, seed=args.seed)
    counters = _Counters()
    logger.info("publishing to %s at %.0f events/s", settings.raw_topic, args.rate)
    _produce(settings, options, counters, stop)
    logger.info("published %d events", counters.sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
