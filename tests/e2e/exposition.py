"""The metric names the ops kit uses (the Grafana dashboard's queries, the alert rules) and
what a service's ``/metrics`` declares, for checking the one against the other."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from codeengine.records import metrics as records_metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "codeengine.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Every metric of the project is named codeengine_...; a PromQL function, label or keyword
# never is.
_METRIC = re.compile(r"\bcodeengine_[a-zA-Z0-9_:]*")


def _exprs(node: Any) -> Iterator[str]:
    """Every ``expr`` string anywhere in a decoded JSON or YAML document."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    """The PromQL of every target of every panel of the dashboard."""
    return list(_exprs(json.loads(path.read_text())))


def alert_exprs(path: Path = ALERTS) -> list[str]:
    """The PromQL of every rule of the rule file."""
    return list(_exprs(yaml.safe_load(path.read_text())))


def metric_names(exprs: Iterable[str]) -> set[str]:
    """The metric names the PromQL expressions select."""
    return {name for expr in exprs for name in _METRIC.findall(expr)}


def declared(exposition: str) -> dict[str, str]:
    """The metric families a Prometheus text exposition declares (``# TYPE``), with types."""
    families = {}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families[name] = kind
    return families


def exposed(name: str, families: Mapping[str, str]) -> bool:
    """Whether the series ``name`` belongs to a declared family: itself, or a histogram's
    ``_bucket``, ``_sum`` or ``_count``."""
    if name in families:
        return True
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and families.get(name.removesuffix(suffix)) == "histogram":
            return True
    return False


def records_families() -> set[str]:
    """The families only the records service declares (codeengine.records.metrics), as its
    ``/metrics`` names them."""
    registry = CollectorRegistry()
    for value in vars(records_metrics).values():
        if isinstance(value, MetricWrapperBase):
            registry.register(value)
    return set(declared(generate_latest(registry).decode()))


def records_service_metric(name: str, families: set[str]) -> bool:
    """Whether the series ``name`` is one of the records service's ``families``."""
    return exposed(name, dict.fromkeys(families, "histogram"))
