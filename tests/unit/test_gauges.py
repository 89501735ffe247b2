"""The state gauges read when /metrics is rendered: the signing key's remaining validity, the
trust list's age, the city lease, the build."""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest

from codeengine.code.fencing import Lease, Role
from codeengine.code.keyring import Keyring
from codeengine.code.suites import ED25519
from codeengine.web.gauges import ServiceGauges, signing_key_remaining_s

NOW = 1_800_000_000
DAY_S = 86_400


@dataclass
class Keys:
    keyring: Keyring | None = None
    refreshed_at: float | None = None


def sample(gauges: ServiceGauges, name: str, **labels: str) -> float | None:
    registry = CollectorRegistry()
    registry.register(gauges)
    return registry.get_sample_value(name, labels)


def test_remaining_validity_is_the_current_keys_or_a_staged_one_that_follows_it() -> None:
    ring = Keyring.generate_at(NOW - 10 * DAY_S, ED25519, os.urandom, lifetime_s=30 * DAY_S)
    assert signing_key_remaining_s(ring, NOW) == 20 * DAY_S
    assert signing_key_remaining_s(ring, NOW + 20 * DAY_S + 1) == 0, "expired: nothing signs"
    assert signing_key_remaining_s(None, NOW) == 0, "no keyring loaded"
    # Staged to sign in 300 s, for 400 days: the keyring has a key for that long then.
    staged = ring.rotate_at(NOW, ED25519, 600, os.urandom, activate_in_s=300)
    assert signing_key_remaining_s(staged, NOW) == 300 + 400 * DAY_S
    # Once it signs, the promoted keyring counts from it.
    assert signing_key_remaining_s(staged, NOW + 400) == 400 * DAY_S - 100
    not_yet = Keyring.generate_at(NOW + 60, ED25519, os.urandom)
    assert signing_key_remaining_s(not_yet, NOW) == 0


def test_an_issuer_reports_its_key_build_and_lease() -> None:
    ring = Keyring.generate_at(NOW - DAY_S, ED25519, os.urandom, lifetime_s=8 * DAY_S)
    lease: list[tuple[int, Lease] | None] = [None]
    gauges = ServiceGauges("issuer", Keys(ring), lambda: NOW, signs=True, lease=lambda: lease[0])
    assert sample(gauges, "codeengine_signing_key_remaining_seconds") == 7 * DAY_S
    assert sample(gauges, "codeengine_trust_list_age_seconds") is None, "a verifier's gauge"
    text = generate_latest(_registry(gauges)).decode()
    assert "# TYPE codeengine_fence_epoch gauge" in text, "declared before any lease is seen"
    assert "codeengine_fence_epoch{" not in text
    lease[0] = (320100, Lease(Role.BACKUP, 7, 1500, None))
    assert sample(gauges, "codeengine_fence_epoch", city="320100") == 7
    assert sample(gauges, "codeengine_fence_holder", city="320100", role="backup") == 1
    assert sample(gauges, "codeengine_fence_holder", city="320100", role="primary") == 0
    build = [line for line in text.splitlines() if line.startswith("codeengine_build_info{")]
    assert len(build) == 1 and 'service="issuer"' in build[0] and build[0].endswith(" 1.0")
    assert 'version="' in build[0] and 'python="' in build[0]


def test_a_verifier_reports_the_age_of_its_trust_list() -> None:
    now = [float(NOW)]
    keys = Keys()
    gauges = ServiceGauges("verifier", keys, lambda: now[0], signs=False)
    now[0] += 12.5
    assert sample(gauges, "codeengine_trust_list_age_seconds") == 12.5, "since start: never read"
    keys.refreshed_at = now[0] - 0.25
    assert sample(gauges, "codeengine_trust_list_age_seconds") == 0.25
    assert sample(gauges, "codeengine_signing_key_remaining_seconds") is None
    assert "codeengine_fence_epoch" not in generate_latest(_registry(gauges)).decode()


def _registry(gauges: ServiceGauges) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(gauges)
    return registry
