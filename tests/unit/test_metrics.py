"""The hot paths' plain-number counters reach Prometheus exactly as direct calls would."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from codeengine.metrics import (
    LATENCY_BUCKETS_S,
    HotCounter,
    HotHistogram,
    flush_hot,
    forget_process,
)

# Both sides of every bucket bound, zero, and one past the last bound (+Inf).
OBSERVATIONS = [0.0, 0.0004, 0.0005, 0.0006, 0.001, 0.0049, 0.005, 0.3, 2.5, 2.6, 30.0]


def _histograms() -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    direct_registry, hot_registry = CollectorRegistry(), CollectorRegistry()
    direct = Histogram(
        "t_seconds", "test", ["op"], buckets=LATENCY_BUCKETS_S, registry=direct_registry
    )
    hot = Histogram("t_seconds", "test", ["op"], buckets=LATENCY_BUCKETS_S, registry=hot_registry)
    return direct_registry, direct, hot_registry, hot


def _without_created(text: bytes) -> list[str]:
    return [line for line in text.decode().splitlines() if "_created" not in line]


def test_a_flushed_histogram_equals_one_observed_directly() -> None:
    direct_registry, direct, hot_registry, hot = _histograms()
    series = HotHistogram(hot.labels("display"))
    for seconds in OBSERVATIONS:
        direct.labels("display").observe(seconds)
        series.observe(seconds)
    assert _without_created(generate_latest(hot_registry)) != _without_created(
        generate_latest(direct_registry)
    ), "nothing reaches Prometheus before a flush"
    flush_hot()
    assert _without_created(generate_latest(hot_registry)) == _without_created(
        generate_latest(direct_registry)
    )


def test_a_flush_adds_only_what_came_since_the_last() -> None:
    registry = CollectorRegistry()
    counter = Counter("t_total", "test", ["op"], registry=registry)
    hot = HotCounter(counter.labels("display"))
    for _ in range(3):
        hot.inc()
    flush_hot()
    flush_hot()
    hot.inc()
    flush_hot()
    assert registry.get_sample_value("t_total", {"op": "display"}) == 4.0


def test_a_histogram_flush_keeps_counting_after_it() -> None:
    _, _, registry, hot = _histograms()
    series = HotHistogram(hot.labels("verify"))
    series.observe(0.0007)
    flush_hot()
    series.observe(0.0007)
    series.observe(3.0)
    flush_hot()
    assert registry.get_sample_value("t_seconds_count", {"op": "verify"}) == 3.0
    assert registry.get_sample_value("t_seconds_bucket", {"op": "verify", "le": "0.001"}) == 2.0
    assert registry.get_sample_value("t_seconds_sum", {"op": "verify"}) == pytest.approx(3.0014)


def test_a_gone_workers_live_gauges_are_forgotten_and_its_counts_kept(tmp_path: Path) -> None:
    for name in ("gauge_livesum_4242.db", "counter_4242.db", "gauge_livesum_7.db"):
        (tmp_path / name).write_bytes(b"")
    forget_process(4242, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db", "gauge_livesum_7.db"]
