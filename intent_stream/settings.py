"""One settings object for the whole engine.

Every setting has one declaration below (:data:`SETTINGS_FIELDS`): its name, type, default,
environment variable (``INTENT_STREAM_<NAME>``) and help text. The CLI flags, the README table
and ``intent-stream settings`` are all derived from it, so they cannot drift apart.

Precedence, lowest first: defaults, environment, CLI flags. Only :func:`Settings.from_env`
reads the environment; everything below ``main()`` receives a :class:`Settings`.

>>> env = {"INTENT_STREAM_PARTITIONS": "4", "INTENT_STREAM_REDIS_PASSWORD": "s3cret"}
>>> s = Settings.from_env(env)
>>> s.partitions
4
>>> "s3cret" in repr(s)
False
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "DECISIONS",
    "EMBEDDED",
    "ENV_PREFIX",
    "Settings",
    "SettingsError",
    "hide_password",
    "setting_fields",
    "unknown_variables",
]

ENV_PREFIX = "INTENT_STREAM_"
EMBEDDED = "embedded"
#: When the scoring agent decides (``score_decisions``): per batch of records, or per record.
DECISIONS = ("batch", "record")


class SettingsError(ValueError):
    """A setting has a value the engine cannot use; the message names the variable."""


def hide_password(url: str) -> str:
    """``url`` with the password of its user part, if any, replaced by ``***``.

    >>> hide_password("redis://app:s3cret@cache:6379/0"), hide_password("redis://cache:6379")
    ('redis://app:***@cache:6379/0', 'redis://cache:6379')
    >>> hide_password("rediss://:s3cret@cache")
    'rediss://:***@cache'
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not (sep and at) or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{host}"


def _opt(default: Any, help: str, *, secret: bool = False, group: str = "general") -> Any:
    return field(default=default, metadata={"help": help, "secret": secret, "group": group})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Effective configuration; build with :meth:`from_env`, then :meth:`replace` for flags."""

    # -- connections -------------------------------------------------------------------
    kafka: str = _opt(
        EMBEDDED,
        "Kafka bootstrap servers (host:port,...), or 'embedded' to start a local broker.",
        group="connections",
    )
    kafka_wait: float = _opt(
        60.0,
        "Seconds to wait for the brokers at start-up (retrying with back-off) before "
        "giving up with an error.",
        group="connections",
    )
    redis: str = _opt(
        EMBEDDED,
        "Redis URL (redis://host:port/db, rediss:// for TLS), or 'embedded' to start one.",
        group="connections",
    )
    redis_password: str = _opt(
        "",
        "Redis password (kept out of logs; overrides one in the URL).",
        secret=True,
        group="connections",
    )
    redis_prefix: str = _opt(
        "intent:", "Prefix of every Redis key the engine writes.", group="connections"
    )
    redis_username: str = _opt(
        "",
        "Redis ACL user name (empty: the default user; the password is redis_password).",
        group="connections",
    )
    redis_ssl_cafile: str = _opt(
        "",
        "CA bundle to verify the Redis server's certificate with (rediss:// URLs only; empty: "
        "the system's CAs).",
        group="connections",
    )
    # Kafka security: passed to every Kafka client the engine opens (topics.py).
    kafka_security_protocol: str = _opt(
        "PLAINTEXT",
        "Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
        group="connections",
    )
    kafka_sasl_mechanism: str = _opt(
        "PLAIN",
        "SASL mechanism when the protocol is SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
        group="connections",
    )
    kafka_username: str = _opt("", "SASL user name.", group="connections")
    kafka_password: str = _opt(
        "", "SASL password (kept out of logs).", secret=True, group="connections"
    )
    kafka_ssl_cafile: str = _opt(
        "",
        "CA bundle to verify the brokers' certificates with (SSL, SASL_SSL; empty: the "
        "system's CAs).",
        group="connections",
    )
    kafka_ssl_certfile: str = _opt(
        "", "Client certificate (PEM) for mutual TLS with the brokers.", group="connections"
    )
    kafka_ssl_keyfile: str = _opt(
        "", "Private key (PEM) of the client certificate.", group="connections"
    )
    # -- topics ------------------------------------------------------------------------
    events_topic: str = _opt(
        "intent.events.v1", "Account-keyed event topic the scoring agent reads.", group="topics"
    )
    alerts_topic: str = _opt(
        "intent.sales-alerts.v1", "Hot-lead alerts for sales, keyed by account.", group="topics"
    )
    dlq_topic: str = _opt(
        "intent.events.dlq.v1",
        "Dead letters: rejected records with their reason.",
        group="topics",
    )
    partitions: int = _opt(
        8,
        "Partitions of the event topic and of every table (the unit of scale-out).",
        group="topics",
    )
    replication: int = _opt(1, "Replication factor for topics the engine creates.", group="topics")
    raw_topic: str = _opt(
        "intent.events.raw.v1",
        "Topic trackers publish Segment-spec events to (any key); the ingest agent reads it.",
        group="topics",
    )
    identity_topic: str = _opt(
        "intent.identity.v1",
        "Compacted topic of identity edges (person/cookie -> account), read by every worker.",
        group="topics",
    )
    alerts_dlq_topic: str = _opt(
        "intent.sales-alerts.dlq.v1",
        "Dead letters of the alert forwarder, with the reason: alerts a webhook refused (3xx, "
        "4xx but 408 and 429), gave up on (webhook_give_up) or that are not alerts.",
        group="topics",
    )
    transitions_topic: str = _opt(
        "intent.stage-transitions.v1",
        "Journey stage transitions (from, to, reason, probability), keyed by account.",
        group="topics",
    )
    # -- worker ------------------------------------------------------------------------
    app_id: str = _opt(
        "intent-stream",
        "Faust app id: consumer group and changelog topic prefix.",
        group="worker",
    )
    agents: str = _opt(
        "ingest,score",
        "Agents this worker runs: 'ingest' (raw topic -> account topic), 'score' (account "
        "topic -> state, alerts) or both. Workers with different agents need different "
        "app ids (consumer groups).",
        group="worker",
    )
    store: str = _opt(
        "memory://", "Faust table store (memory:// or rocksdb:// if installed).", group="worker"
    )
    standby_replicas: int = _opt(
        0,
        "Standby copies of each table partition that other workers keep up to date, so a "
        "take-over need not replay the changelog. Only with rocksdb:// (which keeps its "
        "read offsets): the memory store replays a partition's whole changelog whenever it "
        "is assigned, so a standby copy would cost CPU and memory for nothing.",
        group="worker",
    )
    data_dir: str = _opt(
        "",
        "Directory for Faust's local data; empty means a temporary directory, removed when "
        "the process exits.",
        group="worker",
    )
    session_timeout: float = _opt(
        10.0,
        "Kafka consumer session timeout in seconds (a group join takes about half).",
        group="worker",
    )
    producer_linger_ms: int = _opt(
        10,
        "Producer linger in ms: batches changelog, alert and transition writes (the ingest "
        "agent's forwards, batches already, leave at once).",
        group="worker",
    )
    producer_max_batch_bytes: int = _opt(
        524_288,
        "Most bytes a worker's producer puts in one batch per partition (Faust's default is "
        "16 KiB; forwarded event batches are larger, and a full batch makes every send wait).",
        group="worker",
    )
    fetch_max_wait_ms: int = _opt(
        20,
        "Longest a worker's fetch request waits on the broker for new records, in ms (Faust "
        "fixes 1,500). On some brokers records arriving during the wait are not returned "
        "until it ends, so this bounds each hop's added latency; lower costs idle fetches.",
        group="worker",
    )
    ingest_batch_records: int = _opt(
        100,
        "Most raw records the ingest agent takes together. The events they route to each "
        "account-topic partition go out as one record (at most producer_max_batch_bytes), "
        "which the scoring agent reads and writes each account of once: 1 forwards each raw "
        "record's events apart, as the tracker batched them.",
        group="worker",
    )
    ingest_batch_wait_ms: float = _opt(
        10.0,
        "Longest the ingest agent waits for more raw records before forwarding a batch "
        "that is not full, in ms: the latency it may add when records trickle in.",
        group="worker",
    )
    score_batch_records: int = _opt(
        100,
        "Most account-topic records the scoring agent applies together: each account a "
        "batch touches is read once and written once (one changelog message, one Redis "
        "view), and decided on as score_decisions says.",
        group="worker",
    )
    score_decisions: str = _opt(
        "record",
        "When the scoring agent scores an account and decides on its stage and alerts: "
        "'record', after each record, as if the records were applied one by one (a replay "
        "of the account topic, however batched, publishes exactly the same alerts and "
        "transitions); 'batch', once per account per batch of records, after all its "
        "events in the batch: faster, but what is decided depends on the batching, and an "
        "account makes at most one stage move per batch.",
        group="worker",
    )
    score_batch_bytes: int = _opt(
        4_194_304,
        "Most bytes of record values the scoring agent decodes and applies at once: a batch "
        "of larger records is applied in parts, in order (same outputs), so its memory "
        "stays bounded.",
        group="worker",
    )
    score_batch_wait_ms: float = _opt(
        10.0,
        "Longest the scoring agent waits for more records before applying a batch that is "
        "not full, in ms: the latency it may add when records trickle in.",
        group="worker",
    )
    web_host: str = _opt(
        "127.0.0.1", "Address the worker's web server (/metrics, API) binds to.", group="worker"
    )
    web_port: int = _opt(6066, "Port of the worker's web server.", group="worker")
    redis_flush_interval: float = _opt(
        0.2, "Seconds between writes of changed accounts to Redis.", group="worker"
    )
    memory_trim_interval: float = _opt(
        5.0,
        "Seconds between returns of the worker's freed heap memory to the system (glibc's "
        "malloc_trim; 0 disables it, and it does nothing on other C libraries). Without it "
        "the allocator keeps the peak a backlog left.",
        group="worker",
    )
    log_level: str = _opt("info", "Log level: debug, info, warning or error.", group="worker")
    event_loop: str = _opt(
        "auto",
        "The worker's asyncio event loop: 'uvloop' (a faster loop: 1.04-1.05x the events/s "
        "of a worker here), 'asyncio' (the standard library's) or 'auto' (uvloop where installed).",
        group="worker",
    )
    # -- ingestion and identity --------------------------------------------------------
    dedup_window: float = _opt(
        86400.0,
        "Seconds during which a repeated messageId is dropped as a duplicate (0 disables).",
        group="ingest",
    )
    pseudonymise_key: str = _opt(
        "",
        "If set, person ids (userId, anonymousId, previousId) are replaced by a keyed "
        "HMAC-SHA256 of themselves before anything is stored.",
        secret=True,
        group="ingest",
    )
    freemail_domains: str = _opt(
        "",
        "Extra comma-separated free-mail domains whose emails never map to an account "
        "(added to the built-in list: gmail.com, outlook.com, qq.com, 163.com, ...).",
        group="ingest",
    )
    identity_lookback: float = _opt(
        2592000.0,
        "Seconds of an anonymous visitor's earlier activity attributed to the account once "
        "the visitor is identified.",
        group="ingest",
    )
    max_clock_skew: float = _opt(
        86400.0,
        "Events stamped more than this many seconds after they arrived are rejected as "
        "bad_timestamp (0 accepts any future time, e.g. for replays of simulated data).",
        group="ingest",
    )
    pending_max_events: int = _opt(
        200,
        "Most events kept per anonymous visitor while waiting for identification.",
        group="ingest",
    )
    # -- collector ---------------------------------------------------------------------
    collector_host: str = _opt(
        "127.0.0.1",
        "Address the HTTP collector (Segment Tracking API) binds to.",
        group="collector",
    )
    collector_port: int = _opt(8088, "Port of the HTTP collector.", group="collector")
    write_keys: str = _opt(
        "",
        "Comma-separated write keys the collector accepts as HTTP Basic user (required to "
        "start the collector).",
        secret=True,
        group="collector",
    )
    max_body_bytes: int = _opt(
        512000, "Largest HTTP request body the collector accepts (413 above).", group="collector"
    )
    # -- scoring and alerts --------------------------------------------------------------
    alert_enter: float = _opt(
        70.0,
        "Intent score (0-100) at or above which an account becomes a hot lead.",
        group="alerts",
    )
    alert_exit: float = _opt(
        50.0,
        "Score below which an alerted account is re-armed for a new alert.",
        group="alerts",
    )
    alert_cooldown: float = _opt(
        86400.0,
        "Minimum event-time seconds between two alerts for one account, whatever rules fired "
        "(rules firing in one record make one alert naming them all).",
        group="alerts",
    )
    alert_rules: str = _opt(
        "intent_threshold,stage_entry,topic_surge",
        "Comma-separated alert rules in use: intent_threshold (score reaches alert_enter), "
        "stage_entry (the account enters one of alert_stages), topic_surge (a topic surge "
        "starts).",
        group="alerts",
    )
    alert_stages: str = _opt(
        "evaluation,purchase",
        "Comma-separated journey stages whose entry alerts (rule stage_entry).",
        group="alerts",
    )
    alert_weak_fit_points: float = _opt(
        10.0,
        "Points added to alert_enter for accounts whose fit band is weak (fit gating).",
        group="alerts",
    )
    alert_weak_fit_min_score: float = _opt(
        50.0,
        "Intent score a weak-fit account needs for a stage_entry or topic_surge alert.",
        group="alerts",
    )
    alert_surge_min_score: float = _opt(
        30.0,
        "Intent score any account needs for a topic_surge alert: a surge below it is held "
        "back (outcome low_intent), as out-of-market accounts surge on topics too.",
        group="alerts",
    )
    alert_routes: str = _opt(
        "",
        "Routing rules suggesting an alert's owner: ';'-separated 'CONDITIONS -> OWNER', "
        "conditions '&'-separated on country, region, industry, employees, plan, fit_band "
        "(e.g. 'region=EMEA & employees>=1000 -> emea-enterprise; industry=bank|finance -> "
        "fs-team'); the first match wins.",
        group="alerts",
    )
    alert_default_route: str = _opt(
        "sales-{region}",
        "Owner of alerts no routing rule matches; {region} becomes the account's region "
        "from its country (na, latam, emea, apac or unknown).",
        group="alerts",
    )
    alert_emails: str = _opt(
        "hide",
        "'hide' replaces person ids that are email addresses by a pseudonym in alerts; "
        "'show' shows them (the engine keeps no other email of a person).",
        group="alerts",
    )
    intent_horizon_days: float = _opt(
        30.0,
        "The intent score predicts an opportunity or deal within this many days; feature "
        "snapshots are labelled positive by an outcome within it, negative when it passes.",
        group="alerts",
    )
    intent_max_blend: float = _opt(
        0.5,
        "Most weight the intent model's learned logistic regression gets in the score, "
        "against the points prior (0-1; the weight grows with the labels learned up to it). "
        "1 lets the learned model take over once labels pile up.",
        group="alerts",
    )
    label_snapshots: int = _opt(
        10,
        "Most feature snapshots an account keeps per horizon while their labels are pending "
        "(one per horizon/N of event time in which the account was active).",
        group="alerts",
    )
    model_checkpoint_interval: float = _opt(
        60.0,
        "Seconds between checkpoints of the intent and fit models to Redis (only when they "
        "learned something).",
        group="alerts",
    )
    model_checkpoint_labels: int = _opt(
        500,
        "Also checkpoint the models after this many new labels, whatever the interval.",
        group="alerts",
    )
    fit_model_path: str = _opt(
        "fit-model.pkl",
        "Fit model file: 'intent-stream fit train' writes it, the engine loads it "
        "(relative paths are from the working directory).",
        group="alerts",
    )
    stage_config: str = _opt(
        "",
        "Journey stage model (TOML file, checked at start: 'intent-stream stages check FILE'); "
        "empty means the built-in default (intent_stream/stages.default.toml).",
        group="alerts",
    )

    # -- marketing view (intent_stream_marketing_signals_total) --------------------------
    marketing_campaigns: str = _opt(
        "",
        "Comma-separated campaign names that always keep their own 'campaign' label in the "
        "marketing metric (normalised: lower case, [a-z0-9._-], 40 characters).",
        group="marketing",
    )
    marketing_campaign_cap: int = _opt(
        50,
        "How many other distinct campaign names a worker labels by name (first seen first "
        "served); later ones count as 'other'. 0: only the allowlist.",
        group="marketing",
    )

    # -- alert forwarding (intent-stream alerts forward) ---------------------------------
    webhook: str = _opt(
        "",
        "Webhook URL 'alerts forward' posts alerts to (http:// or https://; kept out of logs, "
        "since Slack webhook URLs carry a token).",
        secret=True,
        group="forward",
    )
    webhook_timeout: float = _opt(
        10.0,
        "Seconds to wait for a webhook's answer before the attempt counts as a timeout.",
        group="forward",
    )
    webhook_max_backoff: float = _opt(
        60.0,
        "Longest wait in seconds between two retries of a failing webhook.",
        group="forward",
    )
    webhook_give_up: float = _opt(
        0.0,
        "Seconds after which an alert the webhook keeps failing on is dead-lettered "
        "(0: retry until delivered).",
        group="forward",
    )
    delivered_ttl: float = _opt(
        2592000.0,
        "Seconds Redis remembers a delivered alert id (replays older than this re-post).",
        group="forward",
    )

    def __post_init__(self) -> None:
        problems = list(_validate(self))
        if problems:
            raise SettingsError("; ".join(problems))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.masked().items())
        return f"Settings({shown})"

    def masked(self) -> dict[str, Any]:
        """All settings as a dict, with secrets replaced by ``'***'`` when set, and a
        password inside a URL (``redis://user:pw@host``) too."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            elif isinstance(value, str) and "://" in value:
                value = hide_password(value)
            out[f.name] = value
        return out

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def missing_files(self) -> list[str]:
        """The TLS files named by settings that do not exist here, each as a problem to
        report. Checked by the command line before it connects (a client would only fail
        to connect, retrying until its wait ran out), not when settings are built.

        >>> Settings(kafka_ssl_cafile="/nonexistent/ca.pem").missing_files()
        ["INTENT_STREAM_KAFKA_SSL_CAFILE: no such file '/nonexistent/ca.pem'"]
        """
        names = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "redis_ssl_cafile")
        return [
            f"{env_name(name)}: no such file {getattr(self, name)!r}"
            for name in names
            if getattr(self, name) and not os.path.isfile(getattr(self, name))
        ]

    @property
    def agent_set(self) -> frozenset[str]:
        """The agents this worker runs."""
        return frozenset(a.strip() for a in self.agents.split(",") if a.strip())

    @property
    def write_key_set(self) -> frozenset[str]:
        """The collector's accepted write keys."""
        return frozenset(k.strip() for k in self.write_keys.split(",") if k.strip())

    @property
    def freemail_domain_set(self) -> frozenset[str]:
        """The configured extra free-mail domains, lower-cased."""
        return frozenset(d.strip().lower() for d in self.freemail_domains.split(",") if d.strip())

    @property
    def kafka_embedded(self) -> bool:
        return self.kafka == EMBEDDED

    @property
    def redis_embedded(self) -> bool:
        return self.redis == EMBEDDED

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by ``INTENT_STREAM_*`` variables of ``environ`` (``os.environ``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(env_name(f.name))
            if raw is not None:
                values[f.name] = parse_value(f.name, raw, type(f.default))
        return cls(**values)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``INTENT_STREAM_*`` variable that is no setting (a misspelt one
    would otherwise be ignored without a word), with the nearest setting's name.

    >>> unknown_variables({"INTENT_STREAM_PARTITONS": "4", "INTENT_STREAM_KAFKA": "k:9092"})
    ['INTENT_STREAM_PARTITONS is not a setting and is ignored (INTENT_STREAM_PARTITIONS?)']
    """
    import difflib

    known = [env_name(f.name) for f in setting_fields()]
    known.append(ENV_PREFIX + "TANSU_BIN")  # the embedded broker's binary (embedded.py)
    out = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" ({near[0]}?)" if near else ""
            out.append(f"{name} is not a setting and is ignored{hint}")
    return out


def env_name(name: str) -> str:
    """The environment variable of a setting.

    >>> env_name("web_port")
    'INTENT_STREAM_WEB_PORT'
    """
    return ENV_PREFIX + name.upper()


def parse_value(name: str, raw: str, kind: type) -> Any:
    """Parse ``raw`` as ``kind``, naming the variable in the error.

    >>> parse_value("partitions", "12", int)
    12
    >>> parse_value("partitions", "twelve", int)
    Traceback (most recent call last):
    ...
    intent_stream.settings.SettingsError: INTENT_STREAM_PARTITIONS='twelve' is not a valid int
    """
    try:
        return kind(raw.strip()) if kind is not str else raw
    except ValueError:
        raise SettingsError(f"{env_name(name)}={raw!r} is not a valid {kind.__name__}") from None


def setting_fields() -> Iterator[dataclasses.Field[Any]]:
    """The declared settings, in order (used by the CLI and the docs)."""
    yield from fields(Settings)


def _numbers(s: Settings) -> Iterator[str]:
    """No numeric setting has a meaning below zero, nor for NaN or infinity (a wait of NaN
    seconds would retry for ever)."""
    for f in fields(s):
        value = getattr(s, f.name)
        if type(value) in (int, float) and not (0 <= value < math.inf):
            yield f"{env_name(f.name)} must be a number, 0 or more (got {value})"


def _validate(s: Settings) -> Iterator[str]:
    bad = list(_numbers(s))
    if bad:  # the checks below assume numbers
        yield from bad
        return
    if s.partitions < 1:
        yield f"{env_name('partitions')} must be at least 1 (got {s.partitions})"
    if s.replication < 1:
        yield f"{env_name('replication')} must be at least 1 (got {s.replication})"
    if not 0 < s.web_port < 65536:
        yield f"{env_name('web_port')} must be a TCP port (got {s.web_port})"
    if s.session_timeout <= 0:
        yield f"{env_name('session_timeout')} must be positive (got {s.session_timeout})"
    if s.standby_replicas and s.store.startswith("memory:"):
        yield (
            f"{env_name('standby_replicas')} must be 0 with the memory store (it replays a "
            f"partition's changelog whenever it is assigned); use {env_name('store')}=rocksdb://"
        )
    if not 0 <= s.alert_exit <= s.alert_enter <= 100:
        yield (
            f"need 0 <= {env_name('alert_exit')} <= {env_name('alert_enter')} <= 100 "
            f"(got exit={s.alert_exit}, enter={s.alert_enter})"
        )
    yield from _validate_alerts(s)
    if s.intent_horizon_days <= 0:
        yield f"{env_name('intent_horizon_days')} must be positive (got {s.intent_horizon_days})"
    if not 0.0 <= s.intent_max_blend <= 1.0:
        yield f"{env_name('intent_max_blend')} must be between 0 and 1 (got {s.intent_max_blend})"
    if s.label_snapshots < 1:
        yield f"{env_name('label_snapshots')} must be at least 1 (got {s.label_snapshots})"
    if s.model_checkpoint_interval <= 0 or s.model_checkpoint_labels < 1:
        yield (
            f"{env_name('model_checkpoint_interval')} must be positive and "
            f"{env_name('model_checkpoint_labels')} at least 1"
        )
    if not s.fit_model_path.strip():
        yield f"{env_name('fit_model_path')} must not be empty"
    if s.log_level.lower() not in {"debug", "info", "warning", "error"}:
        yield f"{env_name('log_level')} must be debug, info, warning or error"
    if s.score_decisions not in DECISIONS:
        choices = " or ".join(DECISIONS)
        yield f"{env_name('score_decisions')} must be {choices} (got {s.score_decisions!r})"
    if s.event_loop not in {"auto", "uvloop", "asyncio"}:
        yield f"{env_name('event_loop')} must be auto, uvloop or asyncio (got {s.event_loop!r})"
    if s.redis != EMBEDDED and not s.redis.startswith(("redis://", "rediss://", "unix://")):
        yield f"{env_name('redis')} must be 'embedded' or a redis://, rediss:// or unix:// URL"
    if not 0 < s.collector_port < 65536:
        yield f"{env_name('collector_port')} must be a TCP port (got {s.collector_port})"
    if not s.agent_set or not s.agent_set <= {"ingest", "score"}:
        yield f"{env_name('agents')} must name 'ingest', 'score' or both (got {s.agents!r})"
    if s.producer_max_batch_bytes < 1024:
        yield (
            f"{env_name('producer_max_batch_bytes')} must be at least 1024 "
            f"(got {s.producer_max_batch_bytes})"
        )
    if s.ingest_batch_records < 1 or s.ingest_batch_wait_ms <= 0:
        yield (
            f"{env_name('ingest_batch_records')} must be at least 1 and "
            f"{env_name('ingest_batch_wait_ms')} positive"
        )
    if s.score_batch_records < 1 or s.score_batch_bytes < 1 or s.score_batch_wait_ms <= 0:
        yield (
            f"{env_name('score_batch_records')} and {env_name('score_batch_bytes')} must be "
            f"at least 1 and {env_name('score_batch_wait_ms')} positive"
        )
    if s.max_body_bytes < 1024:
        yield f"{env_name('max_body_bytes')} must be at least 1024 (got {s.max_body_bytes})"
    yield from _validate_forwarding(s)
    yield from _validate_security(s)
    yield from _validate_addresses(s)
    topics = [s.raw_topic, s.events_topic, s.alerts_topic, s.dlq_topic, s.identity_topic]
    if len(set(topics)) != len(topics):
        yield "the raw, event, alert, dead-letter and identity topics must have different names"
    if s.transitions_topic in {*topics, s.alerts_dlq_topic}:
        yield f"{env_name('transitions_topic')} must differ from every other topic"


#: The alert rules (intent_stream.scoring.policy.RULES, not imported: it loads River).
_ALERT_RULES = ("intent_threshold", "stage_entry", "topic_surge")


def _validate_alerts(s: Settings) -> Iterator[str]:
    rules = {r.strip() for r in s.alert_rules.split(",") if r.strip()}
    if not rules <= set(_ALERT_RULES):
        yield (
            f"{env_name('alert_rules')} must list rules among {', '.join(_ALERT_RULES)} "
            f"(got {s.alert_rules!r})"
        )
    for name in ("alert_weak_fit_min_score", "alert_surge_min_score"):  # intent scores
        if not 0 <= getattr(s, name) <= 100:
            yield f"{env_name(name)} must be between 0 and 100"
    if s.alert_emails not in ("hide", "show"):
        yield f"{env_name('alert_emails')} must be 'hide' or 'show' (got {s.alert_emails!r})"
    if s.alert_routes.strip():
        from intent_stream.scoring.policy import AlertRouter, RouteError

        try:
            AlertRouter(s.alert_routes)
        except RouteError as exc:
            yield f"{env_name('alert_routes')}: cannot parse {exc}"


def _validate_forwarding(s: Settings) -> Iterator[str]:
    if s.webhook and not s.webhook.startswith(("http://", "https://")):
        yield f"{env_name('webhook')} must be an http:// or https:// URL"
    if s.webhook_timeout <= 0:
        yield f"{env_name('webhook_timeout')} must be positive (got {s.webhook_timeout})"
    if s.webhook_max_backoff <= 0:
        yield f"{env_name('webhook_max_backoff')} must be positive (got {s.webhook_max_backoff})"
    if s.delivered_ttl < 1:
        yield f"{env_name('delivered_ttl')} must be at least 1 second (got {s.delivered_ttl})"
    others = {s.raw_topic, s.events_topic, s.alerts_topic, s.dlq_topic, s.identity_topic}
    if s.alerts_dlq_topic in others:
        yield f"{env_name('alerts_dlq_topic')} must differ from every other topic"


#: Kafka security protocols and SASL mechanisms the engine's clients all support.
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _validate_security(s: Settings) -> Iterator[str]:
    protocol = s.kafka_security_protocol
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        yield (
            f"{env_name('kafka_security_protocol')} must be one of "
            f"{', '.join(KAFKA_SECURITY_PROTOCOLS)} (got {protocol!r})"
        )
    if protocol.startswith("SASL_"):
        if s.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
            yield (
                f"{env_name('kafka_sasl_mechanism')} must be one of "
                f"{', '.join(KAFKA_SASL_MECHANISMS)} (got {s.kafka_sasl_mechanism!r})"
            )
        if not (s.kafka_username and s.kafka_password):
            yield (
                f"{env_name('kafka_security_protocol')}={protocol} needs "
                f"{env_name('kafka_username')} and {env_name('kafka_password')}"
            )
    if bool(s.kafka_ssl_certfile) != bool(s.kafka_ssl_keyfile):
        yield f"{env_name('kafka_ssl_certfile')} and {env_name('kafka_ssl_keyfile')} go together"
    if s.redis_ssl_cafile and not s.redis.startswith("rediss://"):
        yield f"{env_name('redis_ssl_cafile')} needs a rediss:// URL in {env_name('redis')}"


#: Faust's table stores (``store``), by URL scheme.
STORES = ("memory", "rocksdb", "rocksdict", "aerospike")


def _validate_addresses(s: Settings) -> Iterator[str]:
    """Broker addresses are host:port lists; the store is one Faust knows."""
    if s.kafka != EMBEDDED:
        for address in s.kafka.split(","):
            host, colon, port = address.strip().rpartition(":")
            if not (host and colon and port.isdigit() and 0 < int(port) < 65536):
                yield (
                    f"{env_name('kafka')} must be 'embedded' or host:port[,host:port...] "
                    f"(got {s.kafka!r})"
                )
                break
    scheme = s.store.partition("://")[0]
    if "://" not in s.store or scheme not in STORES:
        yield f"{env_name('store')} must be memory:// or rocksdb:// (got {s.store!r})"
