"""Stop any redis-server left under a folder of test clusters (after an interrupted run).

The kernel already stops them when their parent dies; this catches the rest, by the pid files
the nodes wrote, and removes the folders. ``python -m codeengine.ops.devcluster_reaper DIR``.
"""

from __future__ import annotations

__all__ = ["reap"]

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path


def _is_redis(pid: int) -> bool:
    try:
        return "redis-server" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


def _owner_alive(cluster_dir: Path) -> bool:
    """Whether the process that started this cluster (its ``owner`` file) still runs."""
    try:
        pid = int((cluster_dir / "owner").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def reap(directory: Path) -> int:
    """Kill redis-servers of clusters under ``directory`` whose owner has exited."""
    killed = 0
    orphans = [d for d in directory.glob("cluster-*") if not _owner_alive(d)]
    for pidfile in (p for d in orphans for p in d.glob("*/redis.pid")):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text().strip())
            if _is_redis(pid):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    if killed:
        time.sleep(0.2)
    for child in orphans:
        shutil.rmtree(child, ignore_errors=True)
    return killed


if __name__ == "__main__":
    count = reap(Path(sys.argv[1]))
    if count:
        print(f"reaped {count} leftover redis-server process(es)")
