"""Child processes that cannot outlive the process that started them."""

from __future__ import annotations

__all__ = ["die_with_parent"]

import ctypes
import os
import signal

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
