"""The result codes the store's Lua scripts reply with, one enum per family of scripts.

The scripts (``codeengine/store/lua``) return these as plain numbers; the adapter compares a
reply with a member, never with a bare number, and ``tests/unit/test_scripts.py`` checks that
every number a script returns as a code is a member of its enum.
"""

from __future__ import annotations

__all__ = ["ClaimCode", "ReleaseCode", "RiskCode", "WriteCode", "did_write"]

from collections.abc import Sequence
from enum import IntEnum
from typing import Any


class WriteCode(IntEnum):
    """The first element of a single-subject write's reply (create, status, appeal, rollback)."""

    NOTHING = 0  # nothing to do: the subject existed, or the change was made already
    APPLIED = 1  # written now
    REPEAT = 2  # this operation id was applied before: the reply says what it applied
    UNKNOWN_SUBJECT = -1
    STALE = -2  # the caller's version is not the current one (or the subject changed since)
    FENCED = -3  # a newer writer of the city wrote the subject: this writer is fenced off


class RiskCode(IntEnum):
    """The import script's code for each of its rows."""

    UNCHANGED = 0
    CHANGED = 1
    CREATED = 2  # changed, and the subject created for it
    LISTED = 3  # unchanged, but this batch changed the subject before (list it for a rollback)
    FENCED = -3


class ClaimCode(IntEnum):
    """An alias key's claim by a subject."""

    ALREADY = 0  # the alias was this subject's already
    CLAIMED = 1
    TAKEN = -1  # another subject's


class ReleaseCode(IntEnum):
    """An alias key's release by a subject."""

    NOT_HELD = 0  # not this subject's (or unbound)
    RELEASED = 1


def did_write(reply: Sequence[Any]) -> bool:
    """Whether a write's reply says it wrote, now or before (a refusal needs no replica)."""
    return int(reply[0]) > WriteCode.NOTHING
