"""The capacity plan in each cryptographic profile, from one run of both (``bench.http
--profiles international,national``).

The national profile (SM2, HMAC-SM3, SM4-GCM) costs most where a signature is made or checked:
a display past its code's half-life signs one, and a verify with the store unreachable checks
one, where a cached display and an online verify of the stored token do neither. So the plan is
made for each profile under four assumptions about the daily mix: displays cached and the store
up (what the tiers above assume), every display signing, every verify degraded, and both.
``docs/capacity.md`` carries the section; ``bench/capacity.py`` writes it when the file exists.
"""

from __future__ import annotations

__all__ = ["ASSUMPTIONS", "COMPARED", "profile_plans", "profiles_tier"]

from collections.abc import Mapping
from typing import Any

from bench.capacity import (
    MEASURED_AS,
    TARGET_RPS,
    UTILISATION,
    Inputs,
    Plan,
    plan,
)

ASSUMPTIONS: Mapping[str, Mapping[str, str]] = {
    "displays cached, store up": MEASURED_AS,
    "every display signs": {**MEASURED_AS, "display": "display-refresh"},
    "store down: every verify degraded": {**MEASURED_AS, "verify": "verify-degraded"},
    "both": {**MEASURED_AS, "display": "display-refresh", "verify": "verify-degraded"},
}
"""The daily mix under each assumption: which measured scenario stands for each operation."""
COMPARED = ("display", "display-refresh", "verify", "verify-degraded", "generate-new")
"""The scenarios shown side by side, in the order of the table."""


def profile_plans(document: Mapping[str, Any], source: str) -> dict[str, dict[str, Plan]]:
    """Each profile's plan for ``TARGET_RPS`` under each assumption it has the figures for."""
    plans: dict[str, dict[str, Plan]] = {}
    for name, section in document["profiles"].items():
        inputs = Inputs.from_results({**document, **section}, f"{source} ({name})")
        plans[name] = {
            assumption: plan(inputs, TARGET_RPS, measured_as)
            for assumption, measured_as in ASSUMPTIONS.items()
            if set(measured_as.values()) <= inputs.server_us.keys()
        }
    return plans


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def profiles_tier(document: Mapping[str, Any], source: str) -> list[str]:
    """The section of ``docs/capacity.md`` for both profiles."""
    plans = profile_plans(document, source)
    names = list(plans)
    first = names[0]
    inputs = {name: next(iter(found.values())).inputs for name, found in plans.items()}
    machine = document.get("machine", {})
    config = document.get("config", {})
    lines = [
        "## Both cryptographic profiles",
        "",
        f"From `{source}` (measured {machine.get('date', 'unknown')}, commit "
        f"{machine.get('git_commit', 'unknown')}; `python -m bench.http --profiles "
        f"{','.join(names)} --workers 1 --rounds {config.get('rounds', '?')} --duration "
        f"{config.get('duration_s', '?')} --scenarios {','.join(config.get('scenarios', [])[2:])}"
        " --no-plain --no-overload`): each profile on a cluster, keys and services of its own, "
        "in the same rounds, beside one set of floors. One worker process on one core:",
        "",
        "| operation | " + " | ".join(f"{n} µs/req" for n in names) + " | "
        + " | ".join(f"{n} ÷ {first}" for n in names[1:]) + " |",
        "|---|" + "---:|" * (2 * len(names) - 1),
    ]  # fmt: skip
    for scenario in COMPARED:
        if not all(scenario in inputs[n].server_us for n in names):
            continue
        costs = [inputs[n].server_us[scenario] for n in names]
        ratios = [_n(cost / costs[0], 2) for cost in costs[1:]]
        lines.append(
            f"| `{scenario}` | " + " | ".join(_n(c, 1) for c in costs) + " | "
            + " | ".join(ratios) + " |"
        )  # fmt: skip
    crypto = {n: document["profiles"][n].get("crypto_floor") for n in names}
    floors = [
        f"{c['suite']} signs {_n(c['sign_per_s'])}/s and verifies {_n(c['verify_per_s'])}/s"
        for c in crypto.values()
        if c
    ]
    if floors:
        lines += [
            "",
            "On one core, after the scenarios of the same run: " + "; ".join(floors) + ".",
        ]
    lines += [
        "",
        "`display-refresh` is a subject's first display: it signs a code and stores it, the "
        "work of a display past its code's half-life. `verify-degraded` is verify with every "
        "primary of the profile's cluster paused (`CLIENT PAUSE`): the verifier's shard "
        "breakers open in the warm-up and each answer rests on the signature alone.",
        "",
        f"### Cores for {TARGET_RPS:,} requests/s (daily mix, services and Redis)",
        "",
        "| assumption | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for assumption in ASSUMPTIONS:
        if not all(assumption in plans[n] for n in names):
            continue
        cells = []
        for name in names:
            daily = plans[name][assumption].daily
            cells.append(
                f"{daily.total_cores} ({daily.issuer_processes} issuer, "
                f"{daily.verifier_processes} verifier, {daily.backup_processes} backup, "
                f"{daily.redis_masters}+{daily.redis_replicas} Redis)"
            )
        bold = assumption == next(iter(ASSUMPTIONS))
        label = f"**{assumption}**" if bold else assumption
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Each cell is the tiers' arithmetic above (utilisation "
        f"{UTILISATION:.0%}, the backup pool, Redis masters and replicas) with that "
        "assumption's cost for display or verify. The first line is the plan a deployment "
        "sizes for in either profile; the others are bounds. How often a display signs "
        "depends on how often a resident shows the same code within its half-life: every "
        "display signs when nobody shows a code twice within a minute, and the daily mix "
        "does not say. Degraded verify is what the fleet does while a city's store is "
        "unreachable: in the national profile it needs the cores of the last lines for as "
        "long as that lasts, or it answers slower.",
        "",
    ]
    return lines
