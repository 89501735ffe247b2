"""The alert rules (deploy/prometheus/alerts.yml): valid for Prometheus, and each one's
promtool unit tests pass, firing and not firing.

promtool comes with Debian's ``prometheus`` package, which ``make test`` installs (the
Makefile's ``system-packages``): without it this test fails rather than skips, so a machine
that lacks it cannot pass the suite without having checked the rules.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from codeengine.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts.test.yml"
PROMTOOL_TIMEOUT_S = 60


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is missing: apt-get install prometheus (make test installs it)"
    return subprocess.run(
        [found, *args],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )


def test_the_rules_are_valid() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_rules_unit_tests_pass() -> None:
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert len(alerts) >= 8
    assert alerts - firing == set(), "alerts no test sees fire"
    assert alerts - quiet == set(), "alerts no test sees stay quiet"
    assert (firing | quiet) <= alerts, "tests of alerts the rules do not have"


CAP_SHARE = 0.8
"""Where the stream-cap alert fires: an unstored entry this share of the writers' age cap old."""


def test_the_stream_cap_alert_fires_at_its_share_of_every_kits_cap() -> None:
    """The rule cannot read the settings, so the ages are written in it: they must be 80 % of
    ``verifier.scan_log_max_age_s`` and ``changes.max_age_s`` as the defaults and every
    settings file of the kit set them."""
    rules = yaml.safe_load(RULES.read_text())
    (rule,) = [
        r
        for g in rules["groups"]
        for r in g["rules"]
        if r.get("alert") == "CodeengineRecordsNearStreamCap"
    ]
    found = dict(
        re.findall(r'codeengine_records_lag_seconds\{table="(\w+)"\}\) > (\d+)', rule["expr"])
    )
    assert set(found) == {"scans", "changes"}, rule["expr"]
    kits = [None, *sorted((ROOT / "deploy").rglob("*.toml"))]
    loaded = [load_settings(path, env={}) for path in kits]
    caps = {(s.verifier.scan_log_max_age_s, s.changes.max_age_s) for s in loaded}
    assert len(caps) == 1, f"the kits set different caps: {caps}"
    scans, changes = caps.pop()
    assert int(found["scans"]) == int(CAP_SHARE * scans)
    assert int(found["changes"]) == int(CAP_SHARE * changes)
