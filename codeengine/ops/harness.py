"""Child processes: spawn, wait until ready, read their logs, stop; none outlives its parent.

Every starter of service processes (``codeengine run``, a city's endpoints, the drills, the
throughput bench, the end-to-end and page tests) goes through here, so they all start, wait,
report a dead child and stop the same way.
"""

from __future__ import annotations

__all__ = [
    "Child",
    "ChildExited",
    "Group",
    "HarnessError",
    "NotReady",
    "answers_ok",
    "check_alive",
    "die_with_parent",
    "group",
    "spawn",
    "spawn_worker",
    "stop",
    "wait_ready",
    "wait_until",
    "worker_argv",
]

import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from codeengine.logfile import open_owner_only

_PR_SET_PDEATHSIG = 1
TAIL_CHARS = 2000
"""How much of a dead child's log an error message carries."""


class HarnessError(RuntimeError):
    """A child process did not come up."""


class ChildExited(HarnessError):
    """A child exited while it was awaited; the message carries the tail of its log."""


class NotReady(HarnessError):
    """The children were alive but not ready by the deadline."""


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


@dataclass(frozen=True, slots=True)
class Child:
    """One started process and the file its output goes to (None: discarded)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path | None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        """Whether the process has ended (it is reaped if so)."""
        return self.proc.poll() is not None

    def tail(self, chars: int = TAIL_CHARS) -> str:
        """The last ``chars`` characters of the log, for an error message."""
        if self.log is None:
            return "(output discarded)"
        try:
            with self.log.open("rb") as handle:
                # A long run's log is large: read its end only (4 bytes a character at most).
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4 * chars))
                return handle.read().decode(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log: Path | None,
    *,
    append: bool = True,
    cwd: Path | None = None,
) -> Child:
    """Start ``argv`` with exactly ``env``, stdout and stderr to ``log`` (appended unless not
    ``append``); the child dies with this process."""
    if log is None:
        return Child(name, _popen(argv, env, subprocess.DEVNULL, cwd), None)
    # Owner-only: a log names clients and operations. The child holds its own descriptor, so
    # ours can close at once.
    with os.fdopen(open_owner_only(log, truncate=not append), "ab") as out:
        return Child(name, _popen(argv, env, out, cwd), log)


def _popen(
    argv: Sequence[str], env: Mapping[str, str], out: int | IO[bytes], cwd: Path | None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )


def worker_argv(service: str, log: Path | None = None) -> list[str]:
    """The command line of one worker of ``service`` (``issuer`` or ``verifier``); this
    interpreter, so the children run the same tree as the parent. With ``log`` the worker
    writes and rotates that file itself (codeengine.logfile)."""
    argv = [sys.executable, "-m", "codeengine.web.worker", "--service", service]
    return argv if log is None else [*argv, "--log-file", str(log)]


def spawn_worker(
    service: str, env: Mapping[str, str], log: Path | None, *, append: bool = True
) -> Child:
    """One worker process of ``service``, its output to ``log``, which it keeps (and
    rotates) from its start-up on; it dies with this process."""
    return spawn(service, worker_argv(service, log), env, log, append=append)


def answers_ok(url: str) -> bool:
    """Whether ``url`` answers 200 within a second (a readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def check_alive(children: Sequence[Child]) -> None:
    """ChildExited, with its exit code and log tail, if any of ``children`` has ended."""
    for child in children:
        if child.exited():
            raise ChildExited(
                f"{child.name} exited ({child.proc.returncode}); log {child.log}:\n{child.tail()}"
            )


def wait_until(
    children: Sequence[Child],
    ready: Callable[[], bool],
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
) -> None:
    """Poll ``ready()`` until true; ChildExited as soon as a child ends, NotReady past the
    deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        check_alive(children)
        if ready():
            return
        if time.monotonic() > deadline:
            logs = sorted({str(c.log.parent) for c in children if c.log is not None})
            raise NotReady(f"{what} not ready after {timeout_s:.0f} s; logs in {logs}")
        time.sleep(interval_s)


def wait_ready(children: Sequence[Child], urls: Sequence[str], timeout_s: float) -> None:
    """Wait until every one of ``urls`` (``…/readyz`` for a service) answers 200."""
    wait_until(children, lambda: all(answers_ok(url) for url in urls), timeout_s, ", ".join(urls))


def stop(children: Sequence[Child], drain_s: float) -> list[int]:
    """SIGTERM every child, give all of them ``drain_s`` to drain, SIGKILL the rest; every
    child is reaped. The exit codes, in order (negative: the signal that ended it)."""
    for child in children:
        if child.proc.poll() is None:
            child.proc.terminate()
    deadline = time.monotonic() + drain_s
    codes = []
    for child in children:
        try:
            codes.append(child.proc.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            # SIGKILL cannot be refused: the wait ends, and the child is reaped.
            codes.append(child.proc.wait())
    return codes


@dataclass(slots=True)
class Group:
    """Children started, awaited and stopped together (the workers of one port)."""

    children: list[Child] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    """The exit codes of the last :meth:`stop`."""

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [child.proc for child in self.children]

    def add(self, child: Child) -> Child:
        """Keep ``child`` with the group; it is stopped with the others."""
        self.children.append(child)
        return child

    def log_text(self) -> str:
        """Every child's whole log, one after another."""
        logs = dict.fromkeys(c.log for c in self.children if c.log is not None)
        return "\n".join(log.read_text(errors="replace") for log in logs if log.exists())

    def stop(self, drain_s: float) -> list[int]:
        """Stop every child (see :func:`stop`); the codes are also kept in ``codes``."""
        self.codes = stop(self.children, drain_s)
        return self.codes


@contextmanager
def group(drain_s: float) -> Iterator[Group]:
    """A group whose children are stopped (``drain_s`` each way) when the block ends, however
    it ends; their exit codes are then in ``codes``."""
    started = Group()
    try:
        yield started
    finally:
        started.stop(drain_s)
