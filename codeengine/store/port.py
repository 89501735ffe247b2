"""The store port: what the services need from the place where all state lives.

The services are stateless; this Protocol is the only way they reach state. The adapter for the
real deployment is :class:`codeengine.store.redisstore.RedisStore` (a sharded Redis Cluster).
"""

from __future__ import annotations

__all__ = ["AliasBinding", "RiskWrite", "Store"]

from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple, Protocol

from codeengine.code.changes import PackedChange
from codeengine.code.display import DisplayedCode
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.scans import PackedScan, ScanWindow
from codeengine.code.status import AuditEntry, StatusChange, SubjectRecord, WriteResult
from codeengine.code.verification import Revocations


class RiskWrite(NamedTuple):
    """One imported risk record, as the store applies it to a subject."""

    subject: SubjectId
    colour: Colour
    until: int
    clears: tuple[Colour, ...]
    reason: str
    """The record type."""
    kind: CodeKind
    city: int
    no_data: Colour
    """The colour a subject created by the import starts with."""


class AliasBinding(NamedTuple):
    """One alias credential to bind to a subject: its keyed hash and what lists show of it."""

    subject: SubjectId
    alias: str
    """The keyed hash of the credential (``pseudonym.alias_hash``)."""
    listed: str
    """``type:masked value``, as the subject's alias list shows it."""


class Store(Protocol):
    """Subject records, versioned status writes and the audit trail."""

    async def ping(self, *, every: bool = True) -> int:
        """How many shards did not answer; StoreUnavailable when one did not (``every``) or,
        without ``every``, when none did."""

    async def get_subject(self, subject: SubjectId) -> SubjectRecord | None:
        """The subject's record, or None if the subject was never generated."""

    async def create_subject(self, record: SubjectRecord, actor: str) -> tuple[SubjectRecord, bool]:
        """Create the subject unless it exists; return the stored record and whether it is new."""

    async def set_status(self, change: StatusChange) -> WriteResult:
        """Compare-and-set the colour; acknowledged only after a replica has the write.

        Raises VersionConflict when ``change.if_version`` is not current, UnknownSubject when
        the subject does not exist, WriteNotReplicated when no replica
        confirmed in time (resending the same change is then safe).
        """

    async def audit_trail(self, subject: SubjectId, limit: int = 100) -> list[AuditEntry]:
        """The subject's audit entries, oldest first."""

    async def display_state(
        self, subject: SubjectId, kind: int | None = None
    ) -> tuple[SubjectRecord | None, DisplayedCode | None]:
        """The subject's record and current display token of ``kind``, in one round trip."""

    async def scan_state(
        self, subject: SubjectId, kind: int | None, token: str, now: int
    ) -> tuple[Colour | None, bool]:
        """The subject's colour at ``now`` (None: the store holds no record of it), and whether
        ``token`` is a display token of ``kind`` the issuer handed out (current, or the
        previous one until it expires), in one round trip.
        """

    async def replace_display(
        self,
        subject: SubjectId,
        seen: DisplayedCode | None,
        new: DisplayedCode,
        ttl_ms: int,
        kind: int | None = None,
    ) -> DisplayedCode:
        """Store ``new`` unless the token changed since ``seen``; return the stored token."""

    async def get_keyring(self) -> bytes | None:
        """The sealed keyring, or None before the first one is stored."""

    async def put_keyring(
        self, expected_version: int, sealed: bytes, version: int, trust: bytes
    ) -> None:
        """Store a new keyring version and its trust list; VersionConflict if one came between."""

    async def get_trust(self) -> bytes | None:
        """The public trust list (JWKS JSON) of the stored keyring."""

    async def revoke_code(self, cti: bytes, expires_at: int, now: int) -> None:
        """Revoke one code id until the code expires (acknowledged after a replica has it)."""

    async def revoke_key(self, kid: bytes, now: int) -> None:
        """Revoke a signing key id: every code it signed is refused from now on."""

    async def revocations(self, now: int) -> Revocations:
        """The revoked code ids (unexpired) and key ids."""

    async def get_signed_list(self, kind: int) -> tuple[int, bytes | None]:
        """The stored signed list of ``kind`` (1 trust, 2 revocations): sequence and document."""

    async def put_signed_list(
        self, kind: int, expected_seq: int, seq: int, document: bytes
    ) -> None:
        """Store a signed list unless another came between (VersionConflict), acknowledged."""

    async def append_scans(
        self, entries: list[PackedScan], max_age_ms: int, token: str
    ) -> list[PackedScan]:
        """Append packed scan entries to their cities' logs; return those of cities that failed.

        ``token`` names the batch: a resend with the same token writes nothing twice.
        Entries older than ``max_age_ms`` are trimmed from a stream as the batch is added.

        Cities on healthy shards are written even when another shard is down, exactly once.
        """

    async def claim_offline_scans(
        self, client: str, claims: Sequence[tuple[str, int]], token: str
    ) -> list[bool]:
        """For each ``(scan id, seconds to remember it)``: whether ``client`` did not claim it
        before
        (claimed now under the request's random ``token``). On StoreUnavailable no claim of
        this call is left held, as far as the store answered."""

    async def release_offline_scans(self, client: str, scan_ids: Sequence[str], token: str) -> int:
        """Give back the claims on ``scan_ids`` that ``token`` made; how many. Best effort."""

    async def append_changes(
        self, entries: list[PackedChange], max_age_ms: int, token: str
    ) -> list[PackedChange]:
        """Append packed change entries to their cities' change logs, as ``append_scans``."""

    async def read_scans(self, city: int, from_ms: int, to_ms: int, limit: int) -> ScanWindow:
        """A city's scan entries in ``[from_ms, to_ms]``, at most ``limit``; whether the limit
        cut the window short, and how many entries were unreadable (skipped)."""

    async def get_subjects(self, subjects: Sequence[SubjectId]) -> list[SubjectRecord | None]:
        """Several subjects' records, in order (None for an unknown one)."""

    async def begin_batch(
        self, batch_id: str, rules_version: int, now: int
    ) -> dict[str, str] | None:
        """Register a batch: None to import (new, or resuming a run that stopped), or the
        stored state of a batch imported to the end; BatchConflict if it was rolled back."""

    async def apply_risk(
        self, batch_id: str, writes: Sequence[RiskWrite], now: int, actor: str
    ) -> list[tuple[int, int]]:
        """Apply risk records, acknowledged after a replica has them; (changed, created) each."""

    async def record_batch_progress(
        self, batch_id: str, counters: dict[str, int], errors: list[tuple[int, str]], now: int
    ) -> None:
        """Store a batch's counters so far and append refused rows (line, reason)."""

    async def finish_batch(
        self, batch_id: str, state: str, counters: dict[str, int], now: int
    ) -> None:
        """Mark a batch done (or failed) with its final counters."""

    async def batch_info(
        self, batch_id: str, max_errors: int
    ) -> tuple[dict[str, str], list[tuple[int, str]]]:
        """A batch's state and counters and its first refused rows; UnknownBatch if none."""

    async def rollback_batch(self, batch_id: str, now: int, actor: str) -> dict[str, int]:
        """Restore every subject the batch changed, unless changed since; the counts."""

    async def recent_batches(self, limit: int) -> list[tuple[str, dict[str, str]]]:
        """The latest ``limit`` batches, newest first: each id with its state and counters."""

    async def create_appeal(self, appeal_id: str, fields: dict[str, str]) -> None:
        """Store a new appeal."""

    async def get_appeal(self, appeal_id: str) -> dict[str, str]:
        """An appeal's fields; UnknownAppeal if none."""

    async def decide_appeal(
        self,
        appeal_id: str,
        subject: SubjectId,
        decision: dict[str, str],
        override: tuple[Colour, int] | None,
        actor: str,
        now: int,
    ) -> int:
        """Record a decision (once) and apply an upheld one's override; the subject's version."""

    async def audit_chain(
        self, subject: SubjectId
    ) -> tuple[SubjectRecord | None, list[tuple[bytes, str]]]:
        """The subject's record and its raw audit entries (packed entry, hash), oldest first."""

    def audited_subjects(self) -> AsyncIterator[SubjectId]:
        """Every subject that has an audit trail, shard by shard."""

    async def bind_aliases(
        self, bindings: Sequence[AliasBinding], actor: str, now: int
    ) -> list[str]:
        """Bind each alias to its subject, acknowledged after WAIT; per binding ``bound``,
        ``unchanged`` (already this subject's), ``taken`` (another's) or ``unknown_subject``."""

    async def unbind_alias(self, subject: SubjectId, alias: str, actor: str, now: int) -> bool:
        """Unbind an alias from its subject; whether it was bound to it."""

    async def subject_for_alias(self, alias: str) -> SubjectId | None:
        """The subject an alias stands for, or None."""

    async def list_aliases(self, subject: SubjectId) -> list[tuple[str, str]]:
        """The subject's aliases: (alias hash, ``type:masked``)."""

    async def link_licence(self, subject: SubjectId, licence: str, listed: str) -> bool:
        """Link a licence (keyed hash, ``type:masked``); whether it was new."""

    async def licences(self, subject: SubjectId) -> list[str]:
        """The subject's linked licences as ``type:masked`` entries."""

    async def close(self) -> None:
        """Release connections."""
