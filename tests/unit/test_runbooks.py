"""The runbooks name only commands, endpoints, metrics and alerts that exist.

A runbook is read in a hurry and followed to the letter: a command renamed since it was written
fails at the worst moment. Every ``codeengine`` command line in the runbooks' shell blocks must
parse with the real command line; every endpoint they call or name must be a route of the
issuer, the verifier or the records service; every metric must be one the code defines; every
alert must be a rule of ``deploy/prometheus/alerts.yml``, and every alert's runbook link a
runbook that names it.
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest
import yaml

from codeengine.ops.cli import _parser
from codeengine.records.service import RECORDS_ROUTES
from codeengine.web.routes import Route
from issuer.app import ISSUER_ROUTES
from verifier.app import VERIFIER_ROUTES

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = sorted((ROOT / "docs" / "runbooks").glob("*.md"))
_BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)
_INLINE = re.compile(r"(?<!`)`(codeengine [^`]+)`")
_CALL = re.compile(r"\$(ISSUER|VERIFIER|RECORDS)(/[^\"'\s]*)")
_NAMED = re.compile(r"`(GET|POST|PUT|DELETE) (/[^`\s?]+)`")
_METRIC = re.compile(r"\bcodeengine_[a-z_]+[a-z]\b")
_ALERT = re.compile(r"`(Codeengine[A-Za-z]+)`")
_DEFINED_ALERT = re.compile(r"^\s*- alert: (\w+)\s*$", re.MULTILINE)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _lines(path: Path) -> list[str]:
    """The shell lines of a runbook's ``sh`` blocks, continuation lines joined."""
    lines: list[str] = []
    for block in _BLOCK.findall(_text(path)):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


def _commands() -> list[tuple[str, tuple[str, ...]]]:
    """Every ``codeengine`` command line of the shell blocks, and every one the prose names in
    code. One cut short by a placeholder (``...``, ``a|b``) is checked up to its subcommand:
    the arguments ``--help`` of that subcommand lists."""
    found = set()
    for path in RUNBOOKS:
        for line in [*_lines(path), *_INLINE.findall(_text(path))]:
            words = shlex.split(line, comments=True)
            if words[:1] != ["codeengine"]:
                continue
            whole = list(itertools.takewhile(lambda w: w != "..." and "|" not in w, words))
            if len(whole) < len(words):
                whole = [*itertools.takewhile(lambda w: not w.startswith("-"), whole), "--help"]
            found.add((f"{path.stem}: {' '.join(whole[1:4])}", tuple(whole[1:])))
    return sorted(found)


def _calls() -> list[tuple[str, str, str]]:
    """(service, method, path) of every call and every ``METHOD /path`` the runbooks name."""
    found = []
    for path in RUNBOOKS:
        for line in _lines(path):
            method = "POST" if "-X POST" in line else "GET"
            for service, target in _CALL.findall(line):
                found.append((service.lower(), method, target.split("?")[0]))
        for method, target in _NAMED.findall(_text(path)):
            found.append(("either", method, target))
    return found


def _matches(route: Route, method: str, path: str) -> bool:
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(route.path))
    return route.method == method and re.fullmatch(pattern, path) is not None


def test_the_runbooks_are_found_and_hold_commands_and_calls() -> None:
    assert {p.name for p in RUNBOOKS} >= {
        "README.md",
        "signing-key-compromise.md",
        "shard-loss.md",
        "rolling-upgrade.md",
        "city-failover.md",
        "records-lagging.md",
        "records-down.md",
    }
    assert len(_commands()) >= 5 and len(_calls()) >= 10


@pytest.mark.parametrize(("where", "argv"), _commands(), ids=[c[0] for c in _commands()])
def test_every_codeengine_command_of_a_runbook_parses(where: str, argv: tuple[str, ...]) -> None:
    try:
        _parser().parse_args(argv)
    except SystemExit as exc:  # --version and --help exit 0 once they have printed
        assert exc.code == 0, f"{where}: codeengine {' '.join(argv)} does not parse"


@pytest.mark.parametrize(
    ("service", "method", "path"), sorted(set(_calls())), ids=lambda value: str(value)
)
def test_every_endpoint_of_a_runbook_is_a_route(service: str, method: str, path: str) -> None:
    tables = {"issuer": ISSUER_ROUTES, "verifier": VERIFIER_ROUTES, "records": RECORDS_ROUTES}
    routes = [r for t in tables.values() for r in t] if service == "either" else tables[service]
    assert any(_matches(route, method, path) for route in routes), f"{method} {path}"


def _defined_metrics() -> str:
    return "\n".join(
        _text(source)
        for package in ("codeengine", "issuer", "verifier", "failover")
        for source in (ROOT / package).rglob("*.py")
    )


@pytest.mark.parametrize("metric", sorted({m for p in RUNBOOKS for m in _METRIC.findall(_text(p))}))
def test_every_metric_of_a_runbook_is_defined(metric: str) -> None:
    # A histogram's series carry suffixes its definition does not spell.
    name = re.sub(r"_(bucket|count|sum)$", "", metric)
    assert f'"{name}"' in _defined_metrics(), metric


@pytest.mark.parametrize("alert", sorted({a for p in RUNBOOKS for a in _ALERT.findall(_text(p))}))
def test_every_alert_of_a_runbook_is_a_rule(alert: str) -> None:
    rules = ROOT / "deploy" / "prometheus" / "alerts.yml"
    assert rules.exists(), "deploy/prometheus/alerts.yml"
    assert alert in _DEFINED_ALERT.findall(_text(rules))


def test_every_runbook_link_of_an_alert_is_a_runbook() -> None:
    """An alert's ``runbook_url`` is the page the on-call opens first: it must exist, and each
    rule of the records service's group has one."""
    rules = yaml.safe_load(_text(ROOT / "deploy" / "prometheus" / "alerts.yml"))
    linked = {
        rule["alert"]: rule["annotations"]["runbook_url"]
        for group in rules["groups"]
        for rule in group["rules"]
        if "runbook_url" in rule["annotations"]
    }
    (records,) = [g for g in rules["groups"] if g["name"] == "codeengine-records"]
    assert {r["alert"] for r in records["rules"]} <= set(linked)
    for alert, url in linked.items():
        assert (ROOT / url) in RUNBOOKS, f"{alert}: {url}"
        # The runbook names the alert it is linked from.
        assert f"`{alert}`" in _text(ROOT / url), f"{url} does not name {alert}"
