"""The bench's server groups on the process harness: the framework floor, started and stopped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.http import BenchError, ServerGroup
from codeengine.ops.harness import answers_ok
from tests.unit.test_harness import gone


def test_a_group_of_floors_comes_up_on_one_port_and_stops(tmp_path: Path) -> None:
    floors = ServerGroup("framework", 2, os.environ, tmp_path)
    try:
        floors.start(None)
        floors.wait_ready(timeout_s=60)
        assert answers_ok(floors.url + "/floor")
        pids = floors.pids()
        assert len(pids) == 2 and all(not gone(pid) for pid in pids)
    finally:
        floors.stop()
    assert all(gone(pid) for pid in pids)
    assert floors.pids() == [], "stopped processes are forgotten"


def test_a_server_that_dies_at_start_up_is_a_bench_error_with_its_log(tmp_path: Path) -> None:
    # The store floor cannot reach a cluster that is not there: it exits at start-up.
    env = dict(os.environ, CODEENGINE_CLUSTER_NODES="127.0.0.1:1")
    floors = ServerGroup("store", 1, env, tmp_path)
    try:
        floors.start(None)
        with pytest.raises(BenchError, match=r"(?s)store exited .*store-1w-0\.log"):
            floors.wait_ready(timeout_s=3600)
    finally:
        floors.stop()
