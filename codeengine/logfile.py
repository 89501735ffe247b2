"""A process's own log file: owner-only, rotated by size, by the one process that writes it.

Every service worker has a file of its own (``var/log/issuer-0.log``, ...) and the supervisor
has ``supervisor.log``; no two processes write one file, so the writer can rotate without
telling anyone: when the next line would take the file past ``max_bytes`` it renames
``NAME.log`` to ``NAME.log.1`` (``.1`` to ``.2``, ..., the oldest beyond ``backups`` is gone)
and starts a new ``NAME.log``. A shared file would need the rotation agreed between writers,
or lines of one worker in the file another had just renamed.

With ``capture_stdio`` the file is also the process's standard output and error (``dup2``), and
stays so after each rotation: whatever a library writes there bypassing ``logging`` lands in
the current file, not in a renamed one or a terminal.
"""

from __future__ import annotations

__all__ = ["OWNER_ONLY", "OwnerFileHandler", "open_owner_only"]

import logging
import os
from pathlib import Path

OWNER_ONLY = 0o600
"""Log lines name clients and operations: readable by the service account alone."""


def open_owner_only(path: Path, *, truncate: bool = False) -> int:
    """A descriptor for appending to ``path``, created (or made) owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags, OWNER_ONLY)
    # O_CREAT's mode applies to a new file only: one left by an older run may be 0644.
    os.fchmod(fd, OWNER_ONLY)
    return fd


class OwnerFileHandler(logging.Handler):
    """Writes formatted lines to ``path``, one ``write`` each, and rotates it by size."""

    def __init__(
        self, path: Path, *, max_bytes: int, backups: int, capture_stdio: bool = False
    ) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.capture_stdio = capture_stdio
        self._fd = -1
        self._open()

    def _open(self) -> None:
        fd = open_owner_only(self.path)
        if self.capture_stdio:
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            # The file's own size: with captured output, others may have written to it too.
            size = os.fstat(self._fd).st_size
            if size and size + len(data) > self.max_bytes:
                self.rotate()
            os.write(self._fd, data)
        except Exception:
            self.handleError(record)

    def rotate(self) -> None:
        """Keep the current file as ``.1`` (older ones shift up) and start an empty one."""
        if self.backups == 0:
            os.ftruncate(self._fd, 0)
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()
