"""Child processes that cannot outlive the process that started them."""

from __future__ import annotations

__all__ = ["answers_ok", "die_with_parent", "spawn_worker"]

import ctypes
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For ``preexec_fn``: the kernel sends SIGTERM to the child when its parent exits.

    The child also gets its own process group, so a Ctrl-C in the terminal reaches only the
    parent, which stops its children in order (services before the cluster).
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # If the parent died between fork and prctl no signal will come: the child was
    # re-parented already, so it leaves at once instead of outliving its parent.
    if os.getppid() == 1:
        os._exit(1)
    os.setpgrp()


def spawn_worker(service: str, env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """One worker process of ``service`` (``issuer`` or ``verifier``), its output appended to
    ``log_path``; it dies with this process."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "codeengine.web.worker", "--service", service],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


def answers_ok(url: str) -> bool:
    """Whether ``url`` answers 200 within a second (a readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
