"""What deploy/ and docker-compose.yml contain, for the structure and live Prometheus tests.

Collects every PromQL expression of the Grafana dashboards and the alert rules, the metric
names an expression refers to, and the series names the code exports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from intent_stream.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"

#: Grafana's built-in variables, as the live test substitutes them. Prometheus runs for
#: seconds in a test, so any window of a few minutes covers all of its samples.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "5m", "$__interval": "15s"}

#: Series Prometheus itself attaches to every target (not exported by our code).
PROMETHEUS_SERIES = frozenset({"up"})

_PROMQL_WORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    }
)


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it lives (for messages)."""

    where: str
    expr: str


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))  # collapsed rows hold their panels
    return out


def dashboard_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, p) for name, d in dashboards().items() for p in _panels(d["panels"])]


def dashboard_queries() -> list[Query]:
    return [
        Query(f"{name} / {panel['title']} / {target['refId']}", target["expr"])
        for name, panel in dashboard_panels()
        for target in panel.get("targets", [])
    ]


def rule_queries() -> list[Query]:
    rules = load_yaml(PROMETHEUS_DIR / "rules.yml")
    return [
        Query(f"rules.yml / {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def substitute(expr: str) -> str:
    """``expr`` with Grafana's variables replaced by what the live test evaluates."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (strings, label matchers, ranges, functions out).

    >>> sorted(metric_names('sum by (le) (rate(a_total{x="y z"}[5m])) / on () b > 0.5'))
    ['a_total', 'b']
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        if word.lower() in _PROMQL_WORDS or text[match.end() :].lstrip().startswith("("):
            continue  # an operator keyword, or a function/aggregation call
        if match.start() > 0 and text[match.start() - 1].isdigit():
            continue  # the unit of a number like 5m or 1e3
        names.add(word)
    return names


def exported_series() -> set[str]:
    """Every series name the worker's /metrics can carry (engine and Faust sensor)."""
    names: set[str] = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def prometheus_tools() -> tuple[str, str]:
    """Paths of ``prometheus`` and ``promtool``, installing Debian's package when missing.

    CI and the development machines run as root with apt access; anywhere else the calling
    test is skipped with the reason.
    """
    found = shutil.which("prometheus"), shutil.which("promtool")
    if found[0] and found[1]:
        return found[0], found[1]
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("promtool/prometheus missing and cannot apt-get install prometheus here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:  # stale package lists: refresh once and retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    found = shutil.which("prometheus"), shutil.which("promtool")
    if result.returncode != 0 or not (found[0] and found[1]):
        pytest.skip(f"apt-get install prometheus failed: {result.stderr[-500:]}")
    return found[0], found[1]
