"""Session fixtures: a real Redis Cluster on loopback, and running coroutines on each loop kind."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from codeengine.devcluster import DevCluster, find_free_base_port

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]


@pytest.fixture(scope="session")
def cluster() -> Iterator[DevCluster]:
    """A throwaway 3-master, 3-replica cluster for the whole session, stopped even on failure.

    ``CE_TEST_CLUSTER_DIR`` keeps its folder somewhere known (the Makefile uses it to
    clean up after an interrupted run); otherwise a temporary folder.
    """
    base = os.environ.get("CE_TEST_CLUSTER_DIR")
    directory = Path(tempfile.mkdtemp(prefix="cluster-", dir=base))
    (directory / "owner").write_text(str(os.getpid()))
    dev = DevCluster(directory=directory, base_port=find_free_base_port())
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner[Any]:
    """Run a coroutine to completion on a fresh loop of each kind the services use."""

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        if request.param == "uvloop":
            return uvloop.run(coro)
        return asyncio.run(coro)

    return runner
