"""The ``intent-stream`` command line.

Every setting of :class:`intent_stream.settings.Settings` is also a flag on the commands that
use it (``--kafka``, ``--web-port`` ...); flags beat ``INTENT_STREAM_*`` variables, which beat
defaults.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intent_stream import __version__
from intent_stream.settings import (
    Settings,
    SettingsError,
    env_name,
    hide_password,
    setting_fields,
    unknown_variables,
)

if TYPE_CHECKING:
    from intent_stream.simulate_cli import SimulateOptions

__all__ = ["build_parser", "main"]

_EPILOG = """\
commands:
  demo      start a broker, Redis and a worker locally, feed them simulated B2B journeys
            and show hot-lead alerts as sales would receive them
  worker    run the scoring worker against a broker and Redis (production, docker-compose)
  collector serve the Segment HTTP Tracking API (/v1/track, /v1/batch ...) to the raw topic
  send      publish a JSONL file of Segment events to the raw topic
  simulate  simulated B2B buyer journeys with known ground truth: to a JSONL file, or
            published to the raw topic at a chosen rate
  topics    create (or check) every topic the engine needs, with its partition count
  identity  show a person's, cookie's or account's identity graph (from Redis)
  accounts  'accounts top' prints the accounts with the highest intent scores (from Redis)
  forget    erase a person from the identity graph, account state, pending events, Redis
  settings  print the effective settings (secrets masked), or the README table
  alerts    'alerts tail' prints hot-lead alerts as they arrive; 'alerts forward' posts
            each one, once, to a Slack or any other webhook
  fit       backtest the fit model on a CRM export (progressive validation), or train it
            and store it for the engine
  stages    'stages check [FILE]' validates a journey stage config and prints its stages

Settings come from flags, then INTENT_STREAM_* environment variables, then defaults.
Run 'intent-stream COMMAND --help' for a command's options.
"""

_GROUP_TITLES = {
    "connections": "connections",
    "topics": "topics",
    "worker": "worker",
    "ingest": "ingestion and identity",
    "collector": "collector",
    "alerts": "scoring and alerts",
    "marketing": "marketing view",
    "forward": "alert forwarding",
    "general": "general",
}


def _add_setting_flags(
    parser: argparse.ArgumentParser,
    groups: Sequence[str],
    *,
    only: Collection[str] | None = None,
) -> None:
    """One flag per setting in ``groups`` (and, if given, named in ``only``), with its
    variable and default in the help."""
    made: dict[str, argparse._ArgumentGroup] = {}
    for f in setting_fields():
        group = f.metadata["group"]
        if group not in groups or (only is not None and f.name not in only):
            continue
        if group not in made:
            made[group] = parser.add_argument_group(f"settings: {_GROUP_TITLES[group]}")
        default = "(empty)" if f.default == "" else f.default
        shown = "***" if f.metadata.get("secret") else default
        made[group].add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=type(f.default),
            default=None,
            metavar=type(f.default).__name__.upper(),
            help=f"{f.metadata['help']} [{env_name(f.name)}, default: {shown}]",
        )


def _settings(args: argparse.Namespace) -> Settings:
    base = Settings.from_env()
    overrides = {f.name: getattr(args, f.name, None) for f in setting_fields()}
    return base.replace(**overrides)


def _cmd_worker(args: argparse.Namespace) -> int:
    from intent_stream.runner import run_worker

    return run_worker(_settings(args))


def _cmd_demo(args: argparse.Namespace) -> int:
    from intent_stream.demo import DemoOptions, run_demo

    try:
        options = DemoOptions(
            duration=args.duration,
            accounts=args.accounts,
            rate=args.rate,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    return run_demo(_settings(args), options)


def _cmd_topics(args: argparse.Namespace) -> int:
    from intent_stream.runner import wait_for_broker
    from intent_stream.topics import ensure_topics, topic_specs

    settings = _settings(args)
    if args.action == "list":  # the engine's topics as configured: no broker needed
        for spec in topic_specs(settings):
            print(f"{spec.name:48} {spec.partitions:3d}  {spec.schema or '-':24}  key: {spec.key}")
        return 0
    if settings.kafka_embedded:
        print(
            "topics: give a broker with --kafka HOST:PORT (or INTENT_STREAM_KAFKA)", file=sys.stderr
        )
        return 2
    wait_for_broker(settings)
    created = ensure_topics(settings)
    for spec in topic_specs(settings):
        state = "created" if spec.name in created else "ok"
        print(f"{state:8} {spec.name} ({spec.partitions} partitions)")
    return 0


def _cmd_identity(args: argparse.Namespace) -> int:
    import orjson
    import redis

    from intent_stream.identity import Pseudonymiser, node_of
    from intent_stream.readmodel import identity_key

    settings = _settings(args)
    if settings.redis_embedded:
        print(
            "identity: give the worker's Redis with --redis URL (or INTENT_STREAM_REDIS)",
            file=sys.stderr,
        )
        return 2
    pseudo = Pseudonymiser(settings.pseudonymise_key.encode())
    ids = [args.id] + ([pseudo.person(args.id)] if pseudo.enabled else [])
    from intent_stream.app import redis_options

    client = redis.Redis.from_url(settings.redis, **redis_options(settings))
    try:
        found = []
        for value in ids:
            for kind in ("user", "anon"):
                raw = client.get(identity_key(settings.redis_prefix, node_of(kind, value)))
                if raw:
                    found.append(orjson.loads(raw))
        members = []
        if not found:
            # Not a person or cookie: list the people and cookies of the account ``id``.
            pattern = identity_key(settings.redis_prefix, "*")
            for key in client.scan_iter(match=pattern, count=1000):
                raw = client.get(key)
                doc = orjson.loads(raw) if raw else None
                if doc and doc.get("account") == args.id:
                    members.append(doc)
    finally:
        client.close()
    if args.json:
        print(orjson.dumps({"id": args.id, "nodes": found, "members": members}).decode())
        return 0 if found or members else 1
    for doc in found:
        account = doc["account"] or "(no account yet)"
        via = f" (evidence: {doc['via']})" if doc["via"] else ""
        print(f"{doc['node']}: account {account}{via}")
        if doc.get("person"):
            print(f"  cookie of {doc['person']}")
        if doc.get("cookies"):
            print(f"  cookies: {', '.join(doc['cookies'])}")
    if members:
        print(f"account {args.id}: {len(members)} people and cookies")
        for doc in sorted(members, key=lambda d: str(d["node"])):
            print(f"  {doc['node']} (evidence: {doc['via']})")
    if not found and not members:
        print(f"identity: nothing known about {args.id!r} in {settings.redis_prefix}identity:*")
        return 1
    return 0


def _cmd_accounts(args: argparse.Namespace) -> int:
    import orjson
    import redis

    from intent_stream.app import redis_options
    from intent_stream.readmodel import account_key, by_score_key, top_rows

    settings = _settings(args)
    if settings.redis_embedded:
        print(
            "accounts: give the worker's Redis with --redis URL (or INTENT_STREAM_REDIS)",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.n <= 10_000:
        print("accounts: --n must be between 1 and 10000", file=sys.stderr)
        return 2
    prefix = settings.redis_prefix
    client = redis.Redis.from_url(settings.redis, **redis_options(settings))
    try:
        ranked: list[Any] = list(
            client.zrevrange(by_score_key(prefix), 0, args.n - 1, withscores=True)
        )
        keys = [account_key(prefix, bytes(m).decode()) for m, _ in ranked]
        snapshots: list[Any] = list(client.mget(keys)) if keys else []
    finally:
        client.close()
    rows = top_rows(ranked, snapshots)
    if args.json:
        print(orjson.dumps({"accounts": rows}).decode())
        return 0
    if not rows:
        print(f"accounts: no scored accounts in {by_score_key(prefix)}")
        return 0
    print(f"{'#':>3}  {'account':32} {'intent':>6} {'fit':>5} {'band':8} {'topics':24} top reason")
    for i, row in enumerate(rows, 1):
        fit = "-" if row["fit_score"] is None else f"{row['fit_score']:.0f}"
        topics = ", ".join(t["topic"] for t in row["topics"])[:24] or "-"
        reason = row["reasons"][0]["text"] if row["reasons"] else "-"
        print(
            f"{i:>3}  {row['account_id'][:32]:32} {row['intent_score']:>6.1f} {fit:>5} "
            f"{row['fit_band'] or '-':8} {topics:24} {reason}"
        )
    return 0


def _cmd_forget(args: argparse.Namespace) -> int:
    import orjson

    from intent_stream.privacy import forget_person
    from intent_stream.runner import ping_redis, wait_for_broker

    settings = _settings(args)
    if settings.kafka_embedded or settings.redis_embedded:
        print(
            "forget: give the workers' broker and Redis with --kafka HOST:PORT and --redis URL "
            "(or INTENT_STREAM_KAFKA, INTENT_STREAM_REDIS)",
            file=sys.stderr,
        )
        return 2
    if not args.person.strip():
        print(
            "forget: --person needs the person's id (userId, anonymousId or email)", file=sys.stderr
        )
        return 2
    # Both before anything is published: an erasure must not stop half-way for want of one.
    ping_redis(settings)
    wait_for_broker(settings)
    report = forget_person(settings, args.person)
    print(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    return 0


def _cmd_collector(args: argparse.Namespace) -> int:
    from intent_stream.collector import CollectorError, run_collector

    try:
        return run_collector(_settings(args))
    except CollectorError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return 2


def _cmd_send(args: argparse.Namespace) -> int:
    from intent_stream.client import IntentClient, file_size, send_jsonl
    from intent_stream.runner import wait_for_broker
    from intent_stream.topics import ensure_topics, kafka_client_options

    settings = _settings(args)
    if settings.kafka_embedded:
        print(
            "send: give the broker your workers read with --kafka HOST:PORT "
            "(or INTENT_STREAM_KAFKA)",
            file=sys.stderr,
        )
        return 2
    if args.batch < 1 or (args.rate is not None and not 0.001 <= args.rate < math.inf):
        print(
            "send: --batch must be at least 1 and --rate a number of events per second, "
            "0.001 or more",
            file=sys.stderr,
        )
        return 2
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"send: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    wait_for_broker(settings)
    ensure_topics(settings)
    try:
        with IntentClient(
            bootstrap_servers=settings.kafka,
            topic=settings.raw_topic,
            partitions=settings.partitions,
            batch_size=args.batch,
            client_id=f"{settings.app_id}-send",
            # TLS and SASL as every other client (brokers and client id are given above).
            producer_options={
                k: v
                for k, v in kafka_client_options(settings).items()
                if k not in ("bootstrap_servers", "client_id")
            },
        ) as client:
            summary = send_jsonl(
                client,
                stream,
                total_bytes=None if args.file == "-" else file_size(args.file),
                rate=args.rate,
            )
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    for error in summary.errors:
        print(f"send: {error}", file=sys.stderr)
    print(
        f"sent {summary.delivered:,} of {summary.queued:,} events from {summary.lines:,} lines "
        f"to {settings.raw_topic} in {summary.seconds:.1f}s; {summary.bad:,} bad line(s)"
        + ("; interrupted: the lines after these were not read" if summary.interrupted else "")
    )
    if summary.interrupted:
        return 130
    return 0 if summary.ok else 1


def _cmd_simulate(args: argparse.Namespace) -> int:
    from intent_stream.simulate_cli import (
        SimulateOptions,
        parse_start,
        truth_path_for,
        write_simulation,
    )

    def usage(message: str) -> int:
        print(f"simulate: {message}", file=sys.stderr)
        return 2

    try:
        options = SimulateOptions(
            accounts=args.accounts,
            days=args.days,
            seed=args.seed,
            reveal_share=args.reveal_share,
            crm_sync_minutes=args.crm_sync_minutes,
            start=parse_start(args.start) if args.start else None,
            ending_now=args.ending_now,
            cohorts=args.cohorts,
            rate=args.rate,
        )
    except ValueError as exc:
        return usage(str(exc))
    if args.wait is not None and not args.wait >= 0:
        return usage("--wait must be 0 or more seconds")
    if args.output == "" or args.truth == "":
        return usage("--output and --truth need a file name")
    settings = _settings(args)
    if args.output is not None:
        if args.kafka is not None:
            return usage("give --output FILE.jsonl or --kafka HOST:PORT, not both")
        if args.rate is not None:
            return usage("--rate paces publishing to Kafka; a file is written at full speed")
        output = Path(args.output)
        truth = Path(args.truth) if args.truth else truth_path_for(output)
        # SIGTERM stops it as Ctrl-C does: the temporary files are removed on the way out.
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            summary = write_simulation(options, output, truth=truth)
        except ValueError as exc:
            return usage(str(exc))
        except OSError as exc:
            print(f"simulate: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 1
        finally:
            signal.signal(signal.SIGTERM, previous)
        print(
            f"wrote {summary.events:,} events of {summary.accounts:,} accounts to {output} "
            f"and their ground truth to {truth} in {summary.seconds:.1f}s"
        )
        return 0
    if settings.kafka_embedded:
        return usage(
            "give --output FILE.jsonl, or the broker your workers read with --kafka HOST:PORT "
            "(or INTENT_STREAM_KAFKA)"
        )
    return _simulate_to_kafka(args, settings, options)


def _simulate_to_kafka(
    args: argparse.Namespace, settings: Settings, options: SimulateOptions
) -> int:
    import signal
    import threading

    from intent_stream.runner import wait_for_broker
    from intent_stream.simulate_cli import check_writable, publish_simulation, write_truth
    from intent_stream.topics import ensure_topics

    if args.cohorts == 0 and args.truth:
        print("simulate: --truth needs a finite run (--cohorts N > 0)", file=sys.stderr)
        return 2
    if args.truth:
        try:
            check_writable(Path(args.truth))  # before waiting for the broker
        except ValueError as exc:
            print(f"simulate: {exc}", file=sys.stderr)
            return 2
    wait_for_broker(settings, timeout=args.wait)
    ensure_topics(settings)
    if args.truth:
        try:
            write_truth(options, Path(args.truth))
        except OSError as exc:
            print(f"simulate: cannot write {args.truth}: {exc.strerror}", file=sys.stderr)
            return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        summary = publish_simulation(
            options,
            settings=settings,
            topic=settings.raw_topic,
            partitions=settings.partitions,
            stop=stop,
            client_id=f"{settings.app_id}-simulate",
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    if summary.error:
        print(
            f"simulate: {summary.failed:,} events not delivered: {summary.error}", file=sys.stderr
        )
    stopped = " (stopped)" if summary.interrupted else ""
    print(
        f"sent {summary.delivered:,} of {summary.events:,} events of {summary.accounts:,} "
        f"accounts to {settings.raw_topic} in {summary.seconds:.1f}s{stopped}"
    )
    if summary.failed or summary.error:
        return 1
    # Stopping is how a run of --cohorts 0 ends; a finite run cut short did not finish.
    return 130 if summary.interrupted and args.cohorts != 0 else 0


def _cmd_settings(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.markdown:
        print("| setting | variable | default | meaning |\n|---|---|---|---|")
        for f in setting_fields():
            default = "*(empty)*" if f.default == "" else f"`{f.default}`"
            flag = "--" + f.name.replace("_", "-")
            print(f"| `{flag}` | `{env_name(f.name)}` | {default} | {f.metadata['help']} |")
        return 0
    for name, value in settings.masked().items():
        print(f"{env_name(name):40} {value}")
    return 0


def _alerts_settings(args: argparse.Namespace, command: str) -> Settings:
    """Settings for an alerts command, which needs a real broker (and Redis to forward)."""
    from intent_stream.alerts.tail import AlertsError, require_topics
    from intent_stream.runner import check_listen, ping_redis, wait_for_broker

    settings = _settings(args)
    if settings.kafka_embedded:
        raise AlertsError(
            f"alerts {command}: give the workers' broker with --kafka HOST:PORT "
            "(or INTENT_STREAM_KAFKA); an embedded one would have no alerts"
        )
    topics = [settings.alerts_topic]
    if command == "forward":
        # What can be told without the broker is told before waiting for it.
        if settings.redis_embedded:
            raise AlertsError(
                "alerts forward: give a Redis with --redis URL (or INTENT_STREAM_REDIS); it "
                "remembers delivered alerts across restarts"
            )
        if not settings.webhook:
            raise AlertsError("alerts forward: give --webhook URL (or INTENT_STREAM_WEBHOOK)")
        if args.metrics_port is not None:
            if not 0 < args.metrics_port < 65536:
                raise AlertsError(f"alerts forward: --metrics-port {args.metrics_port} is no port")
            check_listen(settings.web_host, args.metrics_port, flag="--metrics-port")
        ping_redis(settings)  # a RedisError is printed by main, credentials left out
        topics.append(settings.alerts_dlq_topic)
    # kafka-python logs every refused connection at ERROR; wait_for_broker says it once.
    kafka_logger = logging.getLogger("kafka")
    level = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL)
    try:
        wait_for_broker(settings, timeout=args.wait)
    finally:
        kafka_logger.setLevel(level)
    require_topics(settings, topics)
    return settings


def _cmd_alerts_tail(args: argparse.Namespace) -> int:
    from intent_stream.alerts.tail import tail

    settings = _alerts_settings(args, "tail")
    return tail(settings, as_json=args.json, from_beginning=args.from_beginning, group=args.group)


def _cmd_alerts_forward(args: argparse.Namespace) -> int:
    from intent_stream.alerts.forward import ForwardOptions, forward

    settings = _alerts_settings(args, "forward")
    options = ForwardOptions(
        fmt=args.format,
        scope=args.scope,
        group=args.group,
        from_beginning=args.from_beginning,
    )
    return forward(settings, options, metrics_port=args.metrics_port)


def _add_alerts_parser(sub: Any) -> None:
    alerts = sub.add_parser(
        "alerts",
        help="read hot-lead alerts, or forward them to a webhook",
        description="Consume the sales-alerts topic: 'tail' prints alerts, 'forward' posts "
        "each one, once, to a webhook (Slack-compatible by default).",
    )
    actions = alerts.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--from-beginning",
        action="store_true",
        help="a consumer group without committed offsets (or no group) starts at the "
        "oldest alert instead of the newest",
    )
    common.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to wait for the broker to answer before giving up (default: "
        "--kafka-wait, INTENT_STREAM_KAFKA_WAIT, 60)",
    )
    tail = actions.add_parser(
        "tail",
        parents=[common],
        help="print alerts as they arrive",
        description="Print each alert as it arrives: event time, account, score, reasons; "
        "or with --json one CloudEvents JSON object per line (attributes + data). "
        "Ctrl-C stops.",
    )
    tail.add_argument(
        "--json", action="store_true", help="one JSON object per line (CloudEvents format)"
    )
    tail.add_argument(
        "--group",
        metavar="ID",
        default=None,
        help="consumer group to commit offsets in, so a restart resumes (default: none)",
    )
    _add_setting_flags(tail, ["connections", "topics", "worker"])
    tail.set_defaults(func=_cmd_alerts_tail)

    fwd = actions.add_parser(
        "forward",
        parents=[common],
        help="post every alert once to a webhook",
        description="Post every alert to --webhook: a Slack message by default, or with "
        "--format json the CloudEvents JSON object. Retries while the endpoint fails "
        "(timeouts, connection errors, 408, 429, 5xx) with capped exponential back-off; "
        "dead-letters alerts it refuses (other 4xx) to the alerts DLQ; commits each offset "
        "only after delivery and skips alerts Redis marks as delivered. SIGINT/SIGTERM stop.",
    )
    fwd.add_argument(
        "--format",
        choices=["slack", "json"],
        default="slack",
        help="request body: a Slack message (default) or the CloudEvents JSON object",
    )
    fwd.add_argument(
        "--scope",
        default="webhook",
        metavar="NAME",
        help="names the destination: delivered alerts are remembered per scope, so give "
        "each webhook its own (default: webhook)",
    )
    fwd.add_argument(
        "--group",
        metavar="ID",
        default=None,
        help="consumer group (default: <app_id>-alerts-forward-<scope>)",
    )
    fwd.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on <web_host>:PORT/metrics (default: off)",
    )
    _add_setting_flags(fwd, ["connections", "topics", "worker", "forward"])
    fwd.set_defaults(func=_cmd_alerts_forward)


# -- fit backtest / fit train ----------------------------------------------------------------
# Label values understood without --positive (case and surrounding spaces ignored); other
# numbers count as positive when non-zero. Anything else needs --positive.
_POSITIVE_LABELS = frozenset(
    {"1", "true", "t", "yes", "y", "won", "closed won", "closed-won", "converted", "customer"}
)
_NEGATIVE_LABELS = frozenset(
    {"0", "false", "f", "no", "n", "lost", "closed lost", "closed-lost", "not converted"}
)
_FIT_PROGRESS_EVERY = 10_000


class FitInputError(ValueError):
    """The CSV or the options given to ``fit`` cannot be used; the message says why."""


def _fit_label(raw: str | None, positive: str | None, row: int) -> bool | None:
    """The label of one cell: ``None`` for an empty cell (the row is skipped)."""
    from intent_stream.scoring.fit import MISSING_VALUES

    text = (raw or "").strip().casefold()
    if text in MISSING_VALUES:
        return None
    if positive is not None:
        return text == positive.strip().casefold()
    if text in _POSITIVE_LABELS:
        return True
    if text in _NEGATIVE_LABELS:
        return False
    try:
        return float(text) != 0.0
    except ValueError:
        raise FitInputError(
            f"row {row}: label {raw!r} is neither a positive value (1, true, yes, won, ...) "
            "nor a negative one (0, false, no, lost, ...); name the positive class with "
            "--positive VALUE"
        ) from None


def _fit_order_key(values: list[str | None]) -> Callable[[int], tuple[int, Any]]:
    """Sort key for --order: numeric if every non-empty value is a number, else text."""
    from intent_stream.scoring.fit import MISSING_VALUES, parse_number

    present = [v.strip() for v in values if v is not None and v.strip()]
    present = [v for v in present if v.casefold() not in MISSING_VALUES]
    numbers = [parse_number(v) for v in present]
    numeric = all(n is not None for n in numbers)

    def key(i: int) -> tuple[int, Any]:
        value = (values[i] or "").strip()
        if not value or value.casefold() in MISSING_VALUES:
            return (1, 0.0 if numeric else "")  # rows without a value go last, in file order
        return (0, parse_number(value) if numeric else value)

    return key


def _fit_rows(args: argparse.Namespace) -> Iterator[tuple[dict[str, Any], bool]]:
    """Stream ``(attributes, label)`` from the CSV, as ``--label/--drop/--order`` say."""
    path = Path(args.file)
    if not path.is_file():
        raise FitInputError(f"no such file: {path}")
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        sample = fh.read(65536)
        fh.seek(0)
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(fh, dialect=dialect)
        columns = [c for c in (reader.fieldnames or []) if c is not None]
        if not columns:
            raise FitInputError(f"{path} is empty (no header row)")
        shown = ", ".join(columns)
        wanted = [("--label", args.label)] + [("--drop", c) for c in args.drop]
        if args.order:
            wanted.append(("--order", args.order))
        for option, column in wanted:
            if column not in columns:
                raise FitInputError(f"{option}: no column {column!r} in {path}; columns: {shown}")
        ignored = {args.label, *args.drop, *([args.order] if args.order else [])}
        features = [c for c in columns if c not in ignored]
        records: Any = enumerate(reader, start=2)  # row 1 is the header
        if args.order:
            loaded = list(records)
            key = _fit_order_key([r.get(args.order) for _, r in loaded])
            records = (loaded[i] for i in sorted(range(len(loaded)), key=key))
        skipped = 0
        for number, record in records:
            label = _fit_label(record.get(args.label), args.positive, number)
            if label is None:
                skipped += 1
                continue
            yield {c: record.get(c) for c in features}, label
        if skipped:
            rows = "row" if skipped == 1 else "rows"
            print(f"fit: skipped {skipped:,} {rows} with an empty label", file=sys.stderr)


def _fit_backtest(args: argparse.Namespace) -> Any:
    from intent_stream.scoring import backtest

    def progress(done: int) -> None:
        print(f"fit: {done:,} rows", file=sys.stderr, flush=True)

    return backtest(_fit_rows(args), progress=progress, progress_every=_FIT_PROGRESS_EVERY)


def _fit_report(args: argparse.Namespace, result: Any, extra: dict[str, Any]) -> None:
    metrics: dict[str, Any] = result.as_dict()
    one_class = result.n > 0 and result.positives in (0, result.n)
    if one_class:
        kind = "positive" if result.positives else "negative"
        print(
            f"fit: every labelled row is {kind}: ROC AUC and PR AUC are undefined "
            "(check --label and --positive)",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps({**metrics, **extra}))
        return
    if result.n == 0:
        print(f"{args.file}: no labelled rows")
        return
    undefined = "undefined (one class only)"

    def show(value: float | None) -> str:
        return undefined if value is None or math.isnan(value) else f"{value:.3f}"

    print(f"fit {args.action} on {args.file} (each row scored before it is learned)")
    print(f"  {'ROC AUC':<10} {show(metrics['roc_auc'])}")
    print(f"  {'PR AUC':<10} {show(metrics['pr_auc'])}")
    print(f"  {'log loss':<10} {show(metrics['log_loss'])}")
    print(f"  {'rows':<10} {result.n:,} ({result.positives:,} positive)")


def _cmd_fit(args: argparse.Namespace) -> int:
    from intent_stream.scoring import FitModelError, save_fit_model

    try:
        result = _fit_backtest(args)
    except FitInputError as exc:
        print(f"intent-stream: {exc}", file=sys.stderr)
        return 1
    if args.action == "backtest":
        _fit_report(args, result, {})
        return 0
    if not result.model.ready:
        print(
            f"intent-stream: not writing a fit model: it needs at least "
            f"{result.model.min_labels} labelled rows with both classes "
            f"(got {result.n:,}, {result.positives:,} positive)",
            file=sys.stderr,
        )
        return 1
    target = args.output or _settings(args).fit_model_path
    try:
        written = save_fit_model(result.model, target)
    except (OSError, FitModelError) as exc:
        print(f"intent-stream: cannot write the fit model to {target}: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"wrote fit model to {written} ({result.n:,} labelled rows)")
    _fit_report(args, result, {"model_path": str(written)})
    return 0


def _add_fit_parser(sub: Any) -> None:
    fit = sub.add_parser(
        "fit",
        help="backtest the fit model on a CRM export, or train it for the engine",
        description="The fit model scores accounts and leads 0-100 from firmographic and lead "
        "attributes (any CSV column; numbers and categories are inferred, empty cells "
        "handled). 'backtest' streams a labelled CSV through it, scoring each row before "
        "learning it, and prints ROC AUC, PR AUC, log loss and rows; 'train' does the same "
        "and stores the warmed model for the engine.",
    )
    actions = fit.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("file", metavar="FILE.csv", help="CRM export with a header row")
    common.add_argument(
        "--label", required=True, metavar="COL", help="column saying whether the row converted"
    )
    common.add_argument(
        "--positive",
        metavar="VALUE",
        help="label value of the positive class (case-insensitive; other values are "
        "negative). Without it: 1/true/yes/y/t/won/closed won/converted/customer are "
        "positive, 0/false/no/n/f/lost/closed lost/not converted negative, other numbers "
        "positive when non-zero. Rows with an empty label are skipped",
    )
    common.add_argument(
        "--drop",
        action="extend",
        nargs="+",
        default=[],
        metavar="COL",
        help="columns that are not attributes (ids, outcomes, leaks); repeatable",
    )
    common.add_argument(
        "--order",
        metavar="COL",
        help="stream rows sorted by this column (numbers if all values are, else as text, "
        "so ISO dates sort in time); empty values last. Default: file order. The column is "
        "not used as an attribute",
    )
    common.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: roc_auc, pr_auc, log_loss (null when undefined), n",
    )
    backtest = actions.add_parser(
        "backtest",
        parents=[common],
        help="progressive validation on a labelled CSV",
        description="Stream the CSV through the engine's fit model, scoring each row before "
        "learning it, and print ROC AUC, PR AUC (average precision), log loss and rows.",
    )
    backtest.set_defaults(func=_cmd_fit)
    train = actions.add_parser(
        "train",
        parents=[common],
        help="backtest, then store the warmed model for the engine",
        description="Backtest as 'fit backtest' does, then write the warmed model (a pickle) "
        "to --output, or to INTENT_STREAM_FIT_MODEL_PATH (default fit-model.pkl).",
    )
    train.add_argument(
        "--output",
        metavar="PATH",
        help="where to write the model (overrides INTENT_STREAM_FIT_MODEL_PATH)",
    )
    train.set_defaults(func=_cmd_fit)


def _cmd_stages(args: argparse.Namespace) -> int:
    from intent_stream.alerts.config import check_alert_stages
    from intent_stream.scoring.stages import load_stage_model

    settings = _settings(args)
    path = args.file if args.file is not None else settings.stage_config
    model = load_stage_model(path)  # StageConfigError is printed by main()
    warning = check_alert_stages(settings, model)  # raises for alert stages set wrong
    print(f"{model.source}: OK, {len(model.stages)} stages, initial {model.initial!r}")
    if warning is not None:
        print(f"warning: {warning}")
    for spec in model.stages:
        flags = " (customer)" if spec.customer else ""
        print(f"\n{spec.name}{flags}: {spec.description}".rstrip(": "))
        if spec.enter:
            sources = ", ".join(s.name for s in model.stages if s.name in spec.from_stages)
            print(f"  enter from {sources or '(nowhere)'} when any of:")
            for rule in spec.enter:
                print(f"    {rule.text}")
        if spec.exit and spec.exit_to:
            print(f"  exit to {spec.exit_to} when any of:")
            for rule in spec.exit:
                print(f"    {rule.text}")
        if spec.dormant_days and spec.exit_to:
            print(f"  dormant after {spec.dormant_days:g} days -> {spec.exit_to}")
        if spec.next:
            print(f"  next: {spec.next} (probability within {model.horizon_days:g} days)")
    if model.outcomes:
        print("\noutcomes:")
        for outcome in model.outcomes:
            sources = (
                "any stage"
                if outcome.from_stages is None
                else ", ".join(s.name for s in model.stages if s.name in outcome.from_stages)
            )
            hold = f", hold {outcome.hold_days:g} days" if outcome.hold_days else ""
            print(f"  {outcome.event} -> {outcome.to} (from {sources}{hold})")
    return 0


def _add_simulate_parser(sub: Any) -> None:
    simulate = sub.add_parser(
        "simulate",
        help="simulated B2B buyer journeys, to a JSONL file or to the raw topic",
        description=textwrap.fill(
            "Simulate B2B accounts (firmographics, buying committees, anonymous browsing "
            "before identification, a hidden stage progression with noise, outcomes) as "
            "Segment-spec events, seeded and deterministic. With --output the events go to "
            "a JSONL file and the ground truth (one JSON object per account) beside it; with "
            "--kafka they are published to the raw topic, routed by visitor as the "
            "collector does, with a progress line on stderr.",
            78,
        ),
        epilog="examples:\n"
        "  intent-stream simulate --accounts 2000 --days 90 --seed 7 --output journeys.jsonl\n"
        "  intent-stream simulate --accounts 2000 --seed 7 --kafka localhost:9094 --rate 2000\n"
        "  intent-stream simulate --cohorts 0 --ending-now --kafka localhost:9094 --rate 200\n"
        "\n--rate, --wait and the settings flags apply when publishing (--kafka).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument(
        "--accounts", type=int, default=200, metavar="N", help="accounts per cohort (200)"
    )
    simulate.add_argument(
        "--days", type=float, default=90.0, metavar="D", help="simulated days per cohort (90)"
    )
    simulate.add_argument("--seed", type=int, default=42, metavar="S", help="seed (42)")
    simulate.add_argument(
        "--reveal-share",
        type=float,
        default=1.0,
        metavar="F",
        help="share of anonymous visitors whose events carry their account before they are "
        "identified, as reverse-IP enrichment would (0-1; default 1). The others' events "
        "carry no account until the visitor is identified",
    )
    simulate.add_argument(
        "--crm-sync-minutes",
        type=float,
        default=60.0,
        metavar="M",
        help="the CRM's events (opportunities, deals, cancellations) arrive at its next sync, "
        "every M minutes on the clock, with their own earlier timestamps: late events, as a "
        "CRM source delivers them (default 60; 0: when they happen)",
    )
    simulate.add_argument(
        "--start",
        metavar="DATE",
        help="start of the simulated clock, ISO-8601 UTC (default 2026-01-01)",
    )
    simulate.add_argument(
        "--ending-now",
        action="store_true",
        help="place the first cohort's window so it ends now (workers reject events "
        "stamped more than max_clock_skew ahead of arrival)",
    )
    simulate.add_argument(
        "--cohorts",
        type=int,
        default=1,
        metavar="N",
        help="cohorts of --accounts, one after another in simulated time, seeds S, S+1 ... "
        "(default 1; 0: until stopped, publishing only)",
    )
    simulate.add_argument(
        "--output",
        metavar="FILE.jsonl",
        help="write the events here and the ground truth to FILE.truth.jsonl",
    )
    simulate.add_argument(
        "--truth",
        metavar="PATH",
        help="where to write the ground truth (default with --output: FILE.truth.jsonl; "
        "publishing: not written unless given)",
    )
    simulate.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="EVENTS_PER_S",
        help="publish at most this many events per second (default: as fast as possible)",
    )
    simulate.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to wait for the broker to answer before giving up (default: "
        "--kafka-wait, INTENT_STREAM_KAFKA_WAIT, 60)",
    )
    # What publishing uses: the broker and its security, the topics it creates and writes,
    # and the app id (the producer's client id); not Redis, nor the worker's tuning.
    publishing = {"app_id"} | {
        f.name
        for f in setting_fields()
        if f.metadata["group"] == "topics" or f.name.startswith("kafka")
    }
    _add_setting_flags(simulate, ["connections", "topics", "worker"], only=publishing)
    simulate.set_defaults(func=_cmd_simulate)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to document the CLI)."""
    parser = argparse.ArgumentParser(
        prog="intent-stream",
        description="Streaming B2B intent engine: scores every account on every event, "
        "explains why, and alerts sales within a second.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"intent-stream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # The forwarding settings are flags of 'alerts forward' (and 'settings') only.
    all_groups = [g for g in _GROUP_TITLES if g != "forward"]

    demo = sub.add_parser(
        "demo",
        help="run everything locally on simulated journeys and show live alerts",
        description="Start an embedded broker and Redis, a worker, and a generator of "
        "simulated B2B buyer journeys; show hot-lead alerts as read back from the "
        "sales-alerts topic, with a running status line. Ctrl-C stops cleanly.",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds and print a summary (default: run until Ctrl-C)",
    )
    demo.add_argument(
        "--accounts", type=int, default=400, help="simulated accounts per cohort (default 400)"
    )
    demo.add_argument(
        "--rate",
        type=float,
        default=1500.0,
        metavar="EVENTS_PER_S",
        help="events per second the generator publishes (default 1500)",
    )
    demo.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")
    _add_setting_flags(demo, all_groups)
    demo.set_defaults(func=_cmd_demo)

    worker = sub.add_parser(
        "worker",
        help="run the scoring worker",
        description="Run the scoring worker. With --kafka embedded / --redis embedded "
        "(the defaults) it starts its own broker and Redis first; in production point it at "
        "your Kafka and Redis. Several workers with the same --app-id share the partitions.",
    )
    _add_setting_flags(worker, all_groups)
    worker.set_defaults(func=_cmd_worker)

    topics = sub.add_parser(
        "topics",
        help="create or list the engine's topics",
        description="Create every topic the engine needs with its partition count "
        "(idempotent; fails if an existing topic has another partition count), or list them.",
    )
    topics.add_argument("action", choices=["create", "list"], help="what to do")
    _add_setting_flags(topics, ["connections", "topics", "worker"])
    topics.set_defaults(func=_cmd_topics)

    identity = sub.add_parser(
        "identity",
        help="show what the identity graph knows about a person, cookie or account",
        description="Look up a userId, anonymousId or account id in the identity graph the "
        "workers mirror to Redis: a person's account, the evidence for it and their cookies; "
        "a cookie's person; an account's people and cookies. With pseudonymisation on, give "
        "the original id: it is pseudonymised with the configured key before the lookup.",
    )
    identity.add_argument("action", choices=["show"], help="what to do")
    identity.add_argument("id", help="a userId, anonymousId or account id")
    identity.add_argument("--json", action="store_true", help="print one JSON object")
    redis_settings = {f.name for f in setting_fields() if f.name.startswith("redis")}
    _add_setting_flags(
        identity, ["connections", "ingest"], only={*redis_settings, "pseudonymise_key"}
    )
    identity.set_defaults(func=_cmd_identity)

    accounts = sub.add_parser(
        "accounts",
        help="show the accounts with the highest intent scores",
        description="Print the accounts with the highest intent scores from the read model "
        "the workers keep in Redis: intent score, fit score and band, surging topics and the "
        "strongest reason. The same data as the worker's GET /accounts?top=N.",
    )
    accounts.add_argument("action", choices=["top"], help="what to do")
    accounts.add_argument(
        "--n", type=int, default=20, metavar="N", help="how many accounts (default 20)"
    )
    accounts.add_argument("--json", action="store_true", help="print one JSON object")
    _add_setting_flags(accounts, ["connections"], only=redis_settings)
    accounts.set_defaults(func=_cmd_accounts)
    forget = sub.add_parser(
        "forget",
        help="forget a person: identity graph, account state, pending events, Redis",
        description="Erase a person (a userId or anonymousId; with pseudonymisation on, give "
        "the original id): tombstones for their identity edges, their Redis identity keys "
        "deleted, and a request every worker applies in stream order to its pending visitors "
        "and account state (tombstones and new values in the table changelogs). Prints what "
        "was found and removed, as JSON.",
    )
    forget.add_argument("--person", required=True, metavar="ID", help="the person's id")
    _add_setting_flags(forget, ["connections", "topics", "worker", "ingest"])
    forget.set_defaults(func=_cmd_forget)
    collector = sub.add_parser(
        "collector",
        help="serve the Segment HTTP Tracking API in front of the raw topic",
        description="Serve Segment's HTTP Tracking API (POST /v1/track, /v1/identify, "
        "/v1/page, /v1/screen, /v1/group, /v1/alias, /v1/batch; GET /healthz, /metrics) and "
        "publish every accepted message to the raw topic. Needs --write-keys and a broker "
        "(--kafka HOST:PORT); a worker with write keys set serves the same collector itself.",
    )
    _add_setting_flags(collector, ["connections", "topics", "collector", "worker"])
    collector.set_defaults(func=_cmd_collector)

    send = sub.add_parser(
        "send",
        help="publish a JSONL file of Segment events to the raw topic",
        description="Publish a file of Segment-spec events, one JSON object per line, to the "
        "raw topic, batched per partition. Bad lines are reported with their number and "
        "reason and skipped. Exit code 0 if every line was sent, 1 otherwise.",
    )
    send.add_argument("file", metavar="FILE.jsonl", help="the events, one per line ('-': stdin)")
    send.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="EVENTS_PER_S",
        help="send at most this many events per second (default: as fast as possible)",
    )
    send.add_argument(
        "--batch",
        type=int,
        default=100,
        metavar="N",
        help="most events per Kafka record (default 100)",
    )
    _add_setting_flags(send, ["connections", "topics", "worker"])
    send.set_defaults(func=_cmd_send)

    _add_simulate_parser(sub)

    settings = sub.add_parser(
        "settings",
        help="print the effective settings",
        description="Print every setting with its environment variable and effective value "
        "(secrets masked).",
    )
    settings.add_argument(
        "--markdown", action="store_true", help="print the README table of all settings"
    )
    _add_setting_flags(settings, list(_GROUP_TITLES))
    settings.set_defaults(func=_cmd_settings)
    _add_alerts_parser(sub)
    _add_fit_parser(sub)
    stages = sub.add_parser(
        "stages",
        help="check a journey stage config and print its stages",
        description="Validate a journey stage config (TOML) as the worker does at start: "
        "errors name the file, line and problem (exit 1); a valid one prints its stages, "
        "rules and outcomes. Without FILE, checks INTENT_STREAM_STAGE_CONFIG (or the built-in "
        "default when that is empty).",
    )
    stages.add_argument("action", choices=["check"], help="what to do")
    stages.add_argument("file", nargs="?", default=None, metavar="FILE", help="the TOML file")
    _add_setting_flags(stages, ["alerts"])
    stages.set_defaults(func=_cmd_stages)
    _short_usage(parser)
    return parser


def _short_usage(parser: argparse.ArgumentParser) -> None:
    """Give every command a one-line usage: its positionals and ``[options]``.

    Argparse's own lists every flag (some commands have ~80 settings flags), so a mistyped
    value was reported under 30-45 lines of usage; ``--help`` still lists them all.

    >>> p = argparse.ArgumentParser(prog="x"); sub = p.add_subparsers()
    >>> s = sub.add_parser("send"); _ = s.add_argument("file"); _ = s.add_argument("--rate")
    >>> _short_usage(p); s.format_usage().strip()
    'usage: x send file [options]'
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in action.choices.values():
            words = ["%(prog)s"]
            for a in sub._actions:
                if isinstance(a, argparse._SubParsersAction):
                    words.append("COMMAND ...")
                elif not a.option_strings:  # a positional: its name, choices or metavar
                    name = a.metavar if isinstance(a.metavar, str) else a.dest
                    if a.choices is not None and a.metavar is None:
                        name = "{" + ",".join(map(str, a.choices)) + "}"
                    words.append(f"[{name}]" if a.nargs == "?" else name)
                elif a.required:  # a required option belongs in the one line too
                    words.append(f"{a.option_strings[0]} {a.metavar or a.dest.upper()}")
            sub.usage = " ".join([*words, "[options]"])
            _short_usage(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``intent-stream`` console script."""
    from intent_stream.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    for warning in unknown_variables(os.environ):
        print(f"intent-stream: warning: {warning}", file=sys.stderr)
    try:
        settings = _settings(args)
        missing = settings.missing_files()
        if missing:
            raise SettingsError("; ".join(missing))
    except SettingsError as exc:
        print(f"intent-stream: bad setting: {_with_flags(str(exc))}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. 'intent-stream settings | head': the reader left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141
    except Exception as exc:
        if _is_user_facing(exc):
            print(f"intent-stream: {exc}", file=sys.stderr)
            return 1
        problem = redis_problem(exc, settings.redis)
        if problem is not None:
            print(f"intent-stream: {problem}", file=sys.stderr)
            return 1
        raise


def _with_flags(message: str) -> str:
    """A settings message with each variable's flag beside it, as either may have set it.

    >>> _with_flags("INTENT_STREAM_WEB_PORT must be a TCP port (got 0)")
    'INTENT_STREAM_WEB_PORT (--web-port) must be a TCP port (got 0)'
    """
    import re

    names = {env_name(f.name): "--" + f.name.replace("_", "-") for f in setting_fields()}
    return re.sub(
        r"\bINTENT_STREAM_[A-Z0-9_]+\b",
        lambda m: f"{m.group(0)} ({names[m.group(0)]})" if m.group(0) in names else m.group(0),
        message,
    )


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def redis_problem(exc: BaseException, url: str) -> str | None:
    """What to tell the user when a command's Redis call failed (None: not a Redis error).

    >>> from redis.exceptions import ConnectionError
    >>> msg = redis_problem(ConnectionError("refused"), "redis://u:pw@h:1/0")
    >>> msg.startswith("Redis at redis://u:***@h:1/0 failed (ConnectionError: refused)")
    True
    >>> redis_problem(ValueError("x"), "redis://h:1/0") is None
    True
    """
    from redis.exceptions import RedisError

    if not isinstance(exc, RedisError):
        return None
    return (
        f"Redis at {hide_password(url)} failed ({type(exc).__name__}: {exc}). Check "
        "INTENT_STREAM_REDIS (--redis URL, the workers' Redis), that Redis is running and "
        "reachable from here, and INTENT_STREAM_REDIS_USERNAME, INTENT_STREAM_REDIS_PASSWORD "
        "and INTENT_STREAM_REDIS_SSL_CAFILE."
    )


def _is_user_facing(exc: BaseException) -> bool:
    """Errors whose message already says what to do: print it, not a traceback."""
    from intent_stream.runner import BrokerUnavailable, PortUnavailable
    from intent_stream.scoring.stages import StageConfigError
    from intent_stream.topics import TopicMismatchError

    known: tuple[type[Any], ...] = (
        BrokerUnavailable,
        PortUnavailable,
        TopicMismatchError,
        SettingsError,
        StageConfigError,
    )
    from intent_stream.alerts.tail import AlertsError

    known = (*known, AlertsError)
    try:
        from intent_stream.embedded import EmbeddedError

        known = (*known, EmbeddedError)
    except ImportError:  # pragma: no cover - only without the module
        pass
    return isinstance(exc, known)
