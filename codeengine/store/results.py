"""The result codes the store's Lua scripts reply with, one enum per family of scripts.

The scripts (``codeengine/store/lua``) return these as plain numbers; the adapter compares a
reply with a member, never with a bare number, and ``tests/unit/test_scripts.py`` checks that
every number a script returns as a code is a member of its enum.
"""

from __future__ import annotations

__all__ = ["ClaimCode", "KeyringCode", "PutCode", "ReleaseCode", "did_write"]

from collections.abc import Sequence
from enum import IntEnum
from typing import Any


class PutCode(IntEnum):
    """A sealed record write's code (``put_record``, and each row of ``put_records``)."""

    EXISTS = 0  # a create found the subject: the reply carries its record
    APPLIED = 1  # written now
    REPEAT = 2  # this operation's marker exists: the reply carries what it applied
    CONFLICT = -4  # the record is not the one the writer read: read it again and retry


class KeyringCode(IntEnum):
    """The keyring's compare-and-set."""

    APPLIED = 1
    STALE = -2  # the caller's version is not the current one


class ClaimCode(IntEnum):
    """An alias key's claim by a subject."""

    ALREADY = 0  # the alias was this subject's already
    CLAIMED = 1
    TAKEN = -1  # another subject's


class ReleaseCode(IntEnum):
    """A key given back by its holder: an alias by its subject, an offline scan's claim by the
    request that made it."""

    NOT_HELD = 0  # not this holder's (or unbound, or expired)
    RELEASED = 1


def did_write(reply: Sequence[Any]) -> bool:
    """Whether a write's reply says it wrote, now or before (a refusal needs no replica)."""
    return int(reply[0]) > PutCode.EXISTS
