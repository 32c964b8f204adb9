"""The ``intent-stream`` command line.

Every setting of :class:`intent_stream.settings.Settings` is also a flag on the commands that
use it (``--kafka``, ``--web-port`` ...); flags beat ``INTENT_STREAM_*`` variables, which beat
defaults.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from intent_stream.settings import Settings, SettingsError, env_name, setting_fields

__all__ = ["build_parser", "main"]

_EPILOG = """\
commands:
  demo      start a broker, Redis and a worker locally, feed them simulated B2B journeys
            and show hot-lead alerts as sales would receive them
  worker    run the scoring worker against a broker and Redis (production, docker-compose)
  topics    create (or check) every topic the engine needs, with its partition count
  settings  print the effective settings (secrets masked), or the README table
  fit       backtest the fit model on a CRM export (progressive validation), or train it
            and store it for the engine

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
    "general": "general",
}


def _add_setting_flags(parser: argparse.ArgumentParser, groups: Sequence[str]) -> None:
    """One flag per setting in ``groups``, with its variable and default in the help."""
    made: dict[str, argparse._ArgumentGroup] = {}
    for f in setting_fields():
        group = f.metadata["group"]
        if group not in groups:
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

    options = DemoOptions(
        duration=args.duration,
        accounts=args.accounts,
        rate=args.rate,
        seed=args.seed,
    )
    return run_demo(_settings(args), options)


def _cmd_topics(args: argparse.Namespace) -> int:
    from intent_stream.runner import wait_for_broker
    from intent_stream.topics import ensure_topics, topic_specs

    settings = _settings(args)
    if settings.kafka_embedded:
        print("topics: give a broker with --kafka HOST:PORT (or INTENT_STREAM_KAFKA)")
        return 2
    if args.action == "list":
        for spec in topic_specs(settings):
            print(f"{spec.name:48} {spec.partitions:3d}  key: {spec.key}")
        return 0
    wait_for_broker(settings)
    created = ensure_topics(settings)
    for spec in topic_specs(settings):
        state = "created" if spec.name in created else "ok"
        print(f"{state:8} {spec.name} ({spec.partitions} partitions)")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to document the CLI)."""
    parser = argparse.ArgumentParser(
        prog="intent-stream",
        description="Streaming B2B intent engine: scores every account on every event, "
        "explains why, and alerts sales within a second.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    all_groups = list(_GROUP_TITLES)

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

    settings = sub.add_parser(
        "settings",
        help="print the effective settings",
        description="Print every setting with its environment variable and effective value "
        "(secrets masked).",
    )
    settings.add_argument(
        "--markdown", action="store_true", help="print the README table of all settings"
    )
    _add_setting_flags(settings, all_groups)
    settings.set_defaults(func=_cmd_settings)
    _add_fit_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``intent-stream`` console script."""
    from intent_stream.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"intent-stream: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _is_user_facing(exc):
            print(f"intent-stream: {exc}", file=sys.stderr)
            return 1
        raise


def _is_user_facing(exc: BaseException) -> bool:
    """Errors whose message already says what to do: print it, not a traceback."""
    from intent_stream.runner import BrokerUnavailable
    from intent_stream.topics import TopicMismatchError

    known: tuple[type[Any], ...] = (BrokerUnavailable, TopicMismatchError, SettingsError)
    try:
        from intent_stream.embedded import EmbeddedError

        known = (*known, EmbeddedError)
    except ImportError:  # pragma: no cover - only without the module
        pass
    return isinstance(exc, known)
