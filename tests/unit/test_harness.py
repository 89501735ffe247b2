"""The process harness: spawn, readiness, log tails, stop; real child processes."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from codeengine.ops.harness import (
    ChildExited,
    NotReady,
    group,
    spawn,
    stop,
    wait_ready,
    wait_until,
)
from tests.e2e.helpers import alive, free_port

PY = sys.executable
SLEEPS = "import time; time.sleep(600)"
IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ignoring', flush=True)\n"
    "time.sleep(600)\n"
)


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie counts as gone)."""
    return not alive(pid)


def test_a_child_gets_exactly_the_environment_and_writes_its_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "env.log"
    argv = [PY, "-c", "import os; print(sorted(k for k in os.environ if k != 'LC_CTYPE'))"]
    child = spawn("env", argv, {"ONLY": "1"}, log)
    assert child.proc.wait(timeout=30) == 0
    assert log.read_text().strip() == "['ONLY']"


def test_ready_when_the_url_answers_200(tmp_path: Path) -> None:
    (tmp_path / "readyz").write_text("ok")
    port = free_port()
    argv = [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(tmp_path)]
    with group(5) as started:
        started.add(spawn("web", argv, os.environ, tmp_path / "web.log"))
        wait_ready(started.children, [f"http://127.0.0.1:{port}/readyz"], 30)
    assert started.codes and started.codes[0] in (0, -signal.SIGTERM)
    assert all(gone(pid) for pid in (c.pid for c in started.children))


def test_a_child_that_exits_first_fails_fast_with_its_log_tail(tmp_path: Path) -> None:
    argv = [PY, "-c", "import sys; print('bad key file: nope'); sys.exit(3)"]
    with group(5) as started:
        child = started.add(spawn("broken", argv, os.environ, tmp_path / "broken.log"))
        # A deadline far beyond the test's timeout: only the exit can end the wait.
        with pytest.raises(ChildExited, match=r"(?s)broken exited \(3\).*bad key file: nope"):
            wait_ready([child], [f"http://127.0.0.1:{free_port()}/readyz"], 3600)


def test_not_ready_by_the_deadline(tmp_path: Path) -> None:
    with group(5) as started:
        child = started.add(spawn("idle", [PY, "-c", SLEEPS], os.environ, None))
        with pytest.raises(NotReady, match="idle-check not ready"):
            wait_until([child], lambda: False, 0.3, "idle-check")
    assert started.codes == [-signal.SIGTERM]


def test_stop_kills_a_child_that_does_not_drain_and_reaps_it(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    child = spawn("stubborn", [PY, "-c", IGNORES_SIGTERM], os.environ, log)
    try:
        wait_until([child], lambda: "ignoring" in log.read_text(), 30, "stubborn")
    finally:
        codes = stop([child], 0.3)
    assert codes == [-signal.SIGKILL]
    assert child.proc.returncode == -signal.SIGKILL and gone(child.pid)


def test_children_do_not_outlive_their_parent(tmp_path: Path) -> None:
    # A parent that starts a grandchild through the harness, says its pid, then dies at once.
    parent = (
        "import os, sys\n"
        "from codeengine.ops.harness import spawn\n"
        f"child = spawn('sleeper', [sys.executable, '-c', {SLEEPS!r}], os.environ, None)\n"
        "print(child.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    log = tmp_path / "parent.log"
    first = spawn("parent", [PY, "-c", parent], os.environ, log)
    assert first.proc.wait(timeout=30) == 0
    grandchild = int(log.read_text().split()[0])
    wait_until([], lambda: gone(grandchild), 30, "the orphan's exit")
