"""Offline verification rate beside the raw signature-verify rate, measured in the same run.

    python -m bench.offline [--rounds 7] [--codes 2000]

The terminal SDK's cost is a decode, the checks and one signature verification; the goal is an
offline rate of at least 0.85 of the raw verify rate of the same library (PyNaCl Ed25519). Both
are timed in alternating rounds so that machine noise hits them alike; medians are reported and
saved to ``bench/results/offline-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from codeengine.keyring import Keyring
from codeengine.model import CodeKind, Colour
from codeengine.suites import ED25519, ES256, SigningSuite, deterministic_random
from codeengine.token import Claims, decode, encode
from codeengine.trustlist import TrustList
from codeengine.verification import Revocations
from verifier.offline import CachedList, OfflineVerifier

GOAL = 0.85
RESULTS = Path(__file__).parent / "results"
NOW = 1_800_000_000


def _rate(work: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        work()
    return count / (time.perf_counter() - started)


def measure(suite: SigningSuite, rounds: int, count: int) -> dict[str, float]:
    """Median codes/s of offline verification and of the raw signature check."""
    ring = Keyring.generate_at(NOW - 60, suite, deterministic_random(b"bench-offline"))
    claims = Claims(NOW + 120, NOW, b"\x01" * 6, b"\x02" * 12, CodeKind.HEALTH, 320100,
                    Colour.GREEN, 3)  # fmt: skip
    token = encode(claims, ring.current)
    decoded = decode(token)
    public, message, signature = (
        ring.current.private.public,
        decoded.to_be_signed,
        decoded.signature,
    )
    cached = CachedList(TrustList.from_keyring(ring), Revocations(), NOW)
    sdk = OfflineVerifier(cached, clock=lambda: float(NOW))
    assert sdk.verify(token).valid
    offline, raw = [], []
    for _ in range(rounds):
        raw.append(_rate(lambda: public.verify(signature, message), count))
        offline.append(_rate(lambda: sdk.verify(token), count))
    raw_rate, offline_rate = statistics.median(raw), statistics.median(offline)
    return {"raw_verify_per_s": raw_rate, "offline_verify_per_s": offline_rate,
            "ratio": offline_rate / raw_rate}  # fmt: skip


def main() -> None:
    """Measure, print a table, save JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--codes", type=int, default=2000)
    args = parser.parse_args()
    results = {
        suite.jose_alg: measure(suite, args.rounds, args.codes) for suite in (ED25519, ES256)
    }
    print(f"{'suite':8} {'raw verify/s':>14} {'offline/s':>12} {'ratio':>7}  goal >= {GOAL}")
    for name, row in results.items():
        print(f"{name:8} {row['raw_verify_per_s']:14,.0f} {row['offline_verify_per_s']:12,.0f} "
              f"{row['ratio']:7.3f}  {'met' if row['ratio'] >= GOAL else 'NOT met'}")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    document = {
        "command": "python -m bench.offline",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "goal_ratio": GOAL,
        "results": results,
    }
    (RESULTS / "offline-latest.json").write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
