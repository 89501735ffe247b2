"""Lua scripts for the status writes. They run atomically inside the subject's slot.

Each script is a file in ``lua/`` that names its KEYS and ARGV at its top. Redis runs one text
per script and cannot include files, so the pieces several scripts share (fencing and the audit
trail, risk periods, the city lease) are files of their own that a script pulls in with a
``-- #include name.lua`` line; the texts are composed once, at import. :data:`SIGNATURES`
declares each script's KEYS and ARGV in order and the enum of its result codes
(``store.results``); ``tests/unit/test_scripts.py`` checks the files against it.

Records and audit entries are built, sealed and MACed by the services (codeengine.code.seal,
codeengine.code.chain) with keys Redis never sees; the scripts that write them only
compare-and-set the bytes they are given.
"""

from __future__ import annotations

__all__ = [
    "ALIAS_CLAIM",
    "ALIAS_RELEASE",
    "APPEND_LOG",
    "FENCE_HANDOVER",
    "FENCE_TICK",
    "OFFLINE_SCAN_RELEASE",
    "PUT_KEYRING",
    "PUT_RECORD",
    "PUT_RECORDS",
    "PUT_SIGNED_LIST",
    "READ_RECORDS",
    "REVOKE",
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

from codeengine.store.results import ClaimCode, KeyringCode, PutCode, ReleaseCode

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


_LEASE = ("lease_key", "epoch_key", "switches_key", "primary_beat_key", "hold_key",
          "backup_beat_key")  # fmt: skip

# Each script's file is its name in lower case (PUT_RECORD: lua/put_record.lua).
SIGNATURES: dict[str, Signature] = {
    "PUT_RECORD": Signature(
        ("record_key", "marker_key", "audit_key", "side_key"),
        ("seen", "new", "entry", "hash", "marker", "side", "side_field", "side_value"),
        codes=PutCode,
    ),
    "READ_RECORDS": Signature(("routing_key",), (), row=("record_key",)),
    "PUT_RECORDS": Signature(
        ("routing_key",),
        ("keep",),
        row=("record_key", "audit_key", "snapshot_key", "seen", "new", "entry", "hash", "snapshot"),
        codes=PutCode,
    ),
    "SWAP_DISPLAY": Signature(("token_key",), ("seen", "new", "ttl_ms")),
    "PUT_KEYRING": Signature(
        ("keyring_key", "trust_key", "version_key"),
        ("expected", "sealed", "version", "trust"),
        codes=KeyringCode,
    ),
    "REVOKE": Signature(("set_key",), ("member", "score", "prune_below")),
    "PUT_SIGNED_LIST": Signature(("list_key",), ("expected", "seq", "document"), codes=KeyringCode),
    "APPEND_LOG": Signature(("log_key", "marker_key"), ("max_age_ms",), row=("entry",)),
    "ALIAS_CLAIM": Signature(("alias_key",), ("subject", "sealed"), codes=ClaimCode),
    "ALIAS_RELEASE": Signature(("alias_key",), ("subject",), codes=ReleaseCode),
    "FENCE_TICK": Signature(_LEASE, ("role", "lease_ms", "handback_ms", "may_take")),
    "FENCE_HANDOVER": Signature(_LEASE, ("to", "hold_ms", "lease_ms")),
    "OFFLINE_SCAN_RELEASE": Signature(("claim_key",), ("token",), codes=ReleaseCode),
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


PUT_RECORD = compose("put_record.lua")
READ_RECORDS = compose("read_records.lua")
PUT_RECORDS = compose("put_records.lua")
SWAP_DISPLAY = compose("swap_display.lua")
PUT_KEYRING = compose("put_keyring.lua")
REVOKE = compose("revoke.lua")
PUT_SIGNED_LIST = compose("put_signed_list.lua")
APPEND_LOG = compose("append_log.lua")
ALIAS_CLAIM = compose("alias_claim.lua")
ALIAS_RELEASE = compose("alias_release.lua")
FENCE_TICK = compose("fence_tick.lua")
FENCE_HANDOVER = compose("fence_handover.lua")
OFFLINE_SCAN_RELEASE = compose("offline_scan_release.lua")
