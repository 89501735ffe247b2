"""Lua scripts for the status writes. They run atomically inside the subject's slot.

Each script is a file in ``lua/`` that names its KEYS and ARGV at its top. Redis runs one text
per script and cannot include files, so the pieces several scripts share (fencing and the audit
trail, risk periods, the city lease) are files of their own that a script pulls in with a
``-- #include name.lua`` line; the texts are composed once, at import. :data:`SIGNATURES`
declares each script's KEYS and ARGV in order and the enum of its result codes
(``store.results``); ``tests/unit/test_scripts.py`` checks the files against it.

Records and audit entries are msgpack, packed and unpacked with Redis's built-in cmsgpack,
so the script is the single writer of a subject's record and of its audit trail.
"""

from __future__ import annotations

__all__ = [
    "ALIAS_CLAIM",
    "ALIAS_LINK",
    "ALIAS_RELEASE",
    "APPEND_SCANS",
    "APPLY_RISK",
    "CREATE_SUBJECT",
    "FENCE_HANDOVER",
    "FENCE_TICK",
    "PUT_KEYRING",
    "RESTORE_RISK",
    "REVOKE",
    "SET_OVERRIDE",
    "SET_STATUS",
    "SIGNATURES",
    "SWAP_DISPLAY",
    "Signature",
    "compose",
    "source",
]

import re
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources

from codeengine.store.results import ClaimCode, ReleaseCode, RiskCode, WriteCode

_INCLUDE = re.compile(r"^-- #include (\w+\.lua)\n", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Signature:
    """A script's KEYS and ARGV names, in the order callers pass them, and its result codes."""

    keys: tuple[str, ...]
    args: tuple[str, ...]
    row: tuple[str, ...] = ()
    """The fields that repeat, row after row, in ARGV after the named arguments."""
    codes: type[IntEnum] | None = None
    """The enum of the codes it replies with (first of its reply, or each of a list); None for
    a script that replies with data."""


# A fenced write's last three arguments: its WriterToken, in that tuple's order.
_WRITER = ("fence_city", "fence_epoch", "writer")
_SUBJECT = ("record_key", "marker_key", "audit_key")  # keyspace.subject_keys, in its order
_LEASE = ("lease_key", "epoch_key", "switches_key", "primary_beat_key", "hold_key",
          "backup_beat_key")  # fmt: skip
# The import's key templates: each key's text before and after the subject.
_TEMPLATES = ("record_prefix", "record_suffix", "snapshot_prefix", "snapshot_suffix",
              "audit_prefix", "audit_suffix")  # fmt: skip

# Each script's file is its name in lower case (CREATE_SUBJECT: lua/create_subject.lua).
SIGNATURES: dict[str, Signature] = {
    "CREATE_SUBJECT": Signature(
        ("record_key", "audit_key"), ("packed_record", "actor", *_WRITER), codes=WriteCode
    ),
    "SET_STATUS": Signature(
        _SUBJECT,
        ("if_version", "colour", "op_id", "at", "actor", "reason", *_WRITER),
        codes=WriteCode,
    ),
    "APPLY_RISK": Signature(
        ("routing_key",),
        ("now", "actor", "batch", "keep", *_WRITER, *_TEMPLATES),
        row=("subject", "colour", "until_ms", "clears", "reason", "kind", "city", "no_data"),
        codes=RiskCode,
    ),
    "RESTORE_RISK": Signature(
        ("record_key", "snapshot_key", "audit_key"),
        ("now", "actor", "batch", *_WRITER),
        codes=WriteCode,
    ),
    "SET_OVERRIDE": Signature(
        _SUBJECT,
        ("colour", "ends", "at", "actor", "reason", "appeal_id", *_WRITER),
        codes=WriteCode,
    ),
    "SWAP_DISPLAY": Signature(("token_key",), ("seen", "new", "ttl_ms")),
    "PUT_KEYRING": Signature(
        ("keyring_key", "trust_key", "version_key"),
        ("expected", "sealed", "version", "trust"),
        codes=WriteCode,
    ),
    "REVOKE": Signature(("set_key",), ("member", "score", "prune_below")),
    "APPEND_SCANS": Signature(("log_key", "marker_key"), ("max_len",), row=("entry",)),
    "ALIAS_CLAIM": Signature(("alias_key",), ("subject",), codes=ClaimCode),
    "ALIAS_RELEASE": Signature(("alias_key",), ("subject",), codes=ReleaseCode),
    "ALIAS_LINK": Signature(
        ("record_key", "aliases_key", "audit_key"),
        ("action", "alias", "listed", "actor", "at"),
        codes=WriteCode,
    ),
    "FENCE_TICK": Signature(_LEASE, ("role", "lease_ms", "handback_ms", "may_take")),
    "FENCE_HANDOVER": Signature(_LEASE, ("to", "hold_ms", "lease_ms")),
}


def source(file: str) -> str:
    """The text of one file of ``lua/``, as written."""
    return (resources.files("codeengine.store") / "lua" / file).read_text(encoding="utf-8")


def compose(file: str) -> str:
    """The script's text as Redis runs it: each ``-- #include`` line replaced by that file."""

    def include(match: re.Match[str]) -> str:
        text = source(match[1])
        if _INCLUDE.search(text):
            raise ValueError(f"{match[1]}: an included file includes nothing itself")
        return text

    return _INCLUDE.sub(include, source(file))


CREATE_SUBJECT = compose("create_subject.lua")
SET_STATUS = compose("set_status.lua")
APPLY_RISK = compose("apply_risk.lua")
RESTORE_RISK = compose("restore_risk.lua")
SET_OVERRIDE = compose("set_override.lua")
SWAP_DISPLAY = compose("swap_display.lua")
PUT_KEYRING = compose("put_keyring.lua")
REVOKE = compose("revoke.lua")
APPEND_SCANS = compose("append_scans.lua")
ALIAS_CLAIM = compose("alias_claim.lua")
ALIAS_RELEASE = compose("alias_release.lua")
ALIAS_LINK = compose("alias_link.lua")
FENCE_TICK = compose("fence_tick.lua")
FENCE_HANDOVER = compose("fence_handover.lua")
