"""The rotation drill's report: its goals and its Markdown, from its summary alone."""

from __future__ import annotations

__all__ = ["FIRST_SUITE", "render_markdown", "rotation_goals"]

import json
from collections import Counter
from typing import Any

from codeengine.ops.drill import goal, goals_table

FIRST_SUITE = "EdDSA"
"""The suite a drill's keyring starts with, as new keyrings do."""


def rotation_goals(s: dict[str, Any], to: str, back: bool) -> list[dict[str, Any]]:
    """The drill's goals, from its summary: rotated to ``to`` (and ``back``)."""
    suites = [FIRST_SUITE, to, *([FIRST_SUITE] if back else [])]
    signing = [r["to"] for r in s["rotations"]]
    verified_by_suite = Counter(
        key.split(" ")[0]
        for table in ("online_by_suite_and_reason", "offline_by_suite_and_reason")
        for key in s[table]
        if key.endswith(" VALID")
    )
    return [
        goal(
            "valid codes refused offline",
            s["refused_valid_offline"],
            "0",
            s["refused_valid_offline"] == 0,
        ),
        goal(
            "valid codes refused online",
            s["refused_valid_online"],
            "0",
            s["refused_valid_online"] == 0,
        ),
        goal(
            "rotations that took effect",
            " -> ".join([FIRST_SUITE, *signing]),
            " -> ".join(suites),
            signing == suites[1:],
        ),
        goal(
            "suites verified valid, online and offline",
            ", ".join(sorted(verified_by_suite)),
            ", ".join(sorted(set(suites))),
            set(verified_by_suite) >= set(suites),
        ),
        goal(
            "replaced keys' codes verified after the switch",
            sum(s["old_codes_valid_after_switch"].values()),
            "> 0",
            sum(s["old_codes_valid_after_switch"].values()) > 0,
        ),
        goal(
            "terminals without the new key when it started signing",
            sum(r["terminals_without_key_at_switch"] for r in s["rotations"]),
            "0",
            all(r["terminals_without_key_at_switch"] == 0 for r in s["rotations"]),
        ),
        goal(
            "terminal list fetches failed or refused",
            sum(s["list_fetch_failures"].values()),
            "0",
            not s["list_fetch_failures"],
        ),
    ]


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def render_markdown(summary: dict[str, Any]) -> str:
    """The readable report."""
    verdict = "PASS" if summary["passed"] else "FAIL"
    o = summary["options"]
    lines = [
        f"# Drill `{summary['drill']}` — city {summary['city']}: {verdict}",
        "",
        f"Staged rotation to {o['to']}{' and back' if o['back'] else ''} under "
        f"{o['rate']:g} req/s over {o['subjects']} subjects; codes live "
        f"{o['display_ttl_s']} s, terminals fetch the signed lists every "
        f"{o['trust_list_max_age_s']} s; the rotation's activate_in_s: "
        f"{'the default' if o['activate_in_s'] is None else o['activate_in_s']}. Times are "
        "seconds from the start of the load.",
        "",
        *goals_table(summary["goals"]),
        "",
        f"Codes displayed: {summary['displayed']} "
        f"({json.dumps(summary['displayed_by_suite'])}); verified online "
        f"{summary['verified_online']}, offline {summary['verified_offline']}; valid codes "
        f"refused: online {summary['refused_valid_online']}, offline "
        f"{summary['refused_valid_offline']}.",
        "",
        "| rotation | asked | acknowledged | in a list fetched | activates | first code | "
        "terminals at the switch, without the key | every terminal fetched again |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rotations"]:
        lines.append(
            f"| to {r['to']} | {r['asked_at_s']:.1f} s | {r['acknowledged_at_s']:.1f} s | "
            f"{_seconds(r['first_list_with_key_s'])} | {r['activates_at_s']:.1f} s | "
            f"{r['first_code_s']:.1f} s | {r['terminals_at_switch']}, "
            f"{r['terminals_without_key_at_switch']} | {r['terminals_refreshed_s']:.1f} s |"
        )
    lines += [
        "",
        "Requests failed: " + (json.dumps(summary["requests_failed"]) or "none") + "; offline "
        f"scans skipped with no terminal on schedule: "
        f"{summary['offline_scans_skipped_terminal_behind']}.",
        "",
    ]
    return "\n".join(lines)
